//! The backtest over a small CSV tree: output mirrors the input, one row per input row, scores in
//! [0, 1], the planted spike scores highest; errors name the file. Run:
//! `cargo test -p anomaly-detector --test model_backtest`.

use std::fmt::Write as _;

use anomaly_detector::backtest::{
    read_series, run_backtest_with, BacktestError, BacktestOptions, ScoreColumn,
};
use anomaly_detector::model::ModelConfig;
use test_support::TempDir;

fn write_series(path: &std::path::Path, n: usize, spike: Option<usize>) {
    let mut text = String::from("timestamp,value\n");
    for i in 0..n {
        let secs = 1_396_310_400 + i as i64 * 300; // 2014-04-01 00:00:00 UTC
        let (d, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let day = 1 + (d - 16_161); // days since 2014-04-01
        let v = 50.0
            + 10.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin()
            + ((i * 7919) % 13) as f64 / 13.0;
        let v = if Some(i) == spike { v + 60.0 } else { v };
        writeln!(
            text,
            "2014-04-{day:02} {:02}:{:02}:00,{v}",
            rem / 3600,
            rem % 3600 / 60
        )
        .expect("write");
    }
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write csv");
}

#[test]
fn output_mirrors_the_tree_in_nab_format() {
    let dir = TempDir::new("detector-model-tree");
    let (input, output) = (dir.join("in"), dir.join("out"));
    write_series(&input.join("catA/one.csv"), 288 * 4, Some(288 * 3 + 40));
    write_series(&input.join("catB/deeper/two.csv"), 500, None);
    std::fs::write(input.join("catA/notes.txt"), "not a series").expect("write");
    let opts = BacktestOptions {
        score: ScoreColumn::Onset,
        progress: false,
    };
    let summary =
        run_backtest_with(&input, &output, &ModelConfig::default(), &opts).expect("backtest");
    assert_eq!(summary.files, 2);
    assert_eq!(summary.rows, 288 * 4 + 500);
    assert!(!output.join("catA/notes.txt").exists());

    let text = std::fs::read_to_string(output.join("catA/one.csv")).expect("output");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score"));
    let rows: Vec<(String, f64)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f[2].parse().expect("score"))
        })
        .collect();
    assert_eq!(rows.len(), 288 * 4);
    assert_eq!(
        rows[0].0, "2014-04-01 00:00:00",
        "timestamps written back unchanged"
    );
    assert!(rows.iter().all(|(_, s)| (0.0..=1.0).contains(s)));
    let best = (0..rows.len()).max_by(|&a, &b| rows[a].1.total_cmp(&rows[b].1));
    assert_eq!(best, Some(288 * 3 + 40));
    assert!(output.join("catB/deeper/two.csv").exists());
}

#[test]
fn errors_name_the_input() {
    let dir = TempDir::new("detector-model-errors");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let err = run_backtest_with(
        &empty,
        &dir.join("out"),
        &ModelConfig::default(),
        &BacktestOptions::default(),
    )
    .expect_err("no csv");
    assert!(matches!(err, BacktestError::NoInput(_)));
    assert!(err.to_string().contains("empty"), "{err}");

    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,value\n2014-04-01 00:00:00,1\nlast tuesday,2\n",
    )
    .expect("write");
    let err = read_series(&bad).expect_err("bad timestamp");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.csv") && msg.contains("row 2") && msg.contains("last tuesday"),
        "{msg}"
    );
}

#[test]
fn a_single_file_input_and_empty_values_work() {
    let dir = TempDir::new("detector-model-single");
    let file = dir.join("series.csv");
    std::fs::write(
        &file,
        "timestamp,value\n1396310400,1\n1396310700,\n1396311000,3\n",
    )
    .expect("write");
    let out = dir.join("out");
    let s = run_backtest_with(
        &file,
        &out,
        &ModelConfig::default(),
        &BacktestOptions::default(),
    )
    .expect("backtest");
    assert_eq!((s.files, s.rows), (1, 3));
    let text = std::fs::read_to_string(out.join("series.csv")).expect("output");
    assert_eq!(text.lines().count(), 4);
    assert!(
        text.lines()
            .nth(2)
            .expect("row")
            .starts_with("1396310700,,"),
        "{text}"
    );
}

/// `ScoreColumn::Alert`: the score where a live alert starts (the first point of each run of
/// anomalous points, the run's score there), 0 everywhere else; the planted spike alerts.
#[test]
fn the_alert_column_marks_where_alerts_start() {
    let dir = TempDir::new("detector-model-alert");
    let (input, output) = (dir.join("in"), dir.join("out"));
    let spike = 288 * 3 + 40;
    write_series(&input.join("one.csv"), 288 * 4, Some(spike));
    let read = |column| {
        let opts = BacktestOptions {
            score: column,
            progress: false,
        };
        let out = output.join(format!("{column:?}"));
        run_backtest_with(&input, &out, &ModelConfig::default(), &opts).expect("backtest");
        std::fs::read_to_string(out.join("one.csv"))
            .expect("output")
            .lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().expect("score").parse().expect("score"))
            .collect::<Vec<f64>>()
    };
    let alert = read(ScoreColumn::Alert);
    let raw = read(ScoreColumn::Raw);
    let starts: Vec<usize> = (0..alert.len()).filter(|&i| alert[i] > 0.0).collect();
    assert!(!starts.is_empty(), "the spike alerts");
    assert!(
        starts.iter().all(|&i| (spike..spike + 3).contains(&i)),
        "alerts start only at the spike: {starts:?}"
    );
    for &i in &starts {
        // an alert starts at a high score (at least score_threshold), written as it is
        assert!((alert[i] - raw[i]).abs() < 1e-9 && alert[i] >= 0.6, "{i}");
    }
}
