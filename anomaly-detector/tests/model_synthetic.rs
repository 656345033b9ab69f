//! The detector on synthetic series with known structure: seasonality, trend, spikes, level
//! shifts, gaps and counters are detected where they are and not elsewhere; degradation paths;
//! no panics on edge inputs. Run: `cargo test -p anomaly-detector --test model_synthetic`.

use anomaly_detector::model::{
    Direction, Evaluation, ModelConfig, ModelKind, SeriesDetector, Severity,
};

const STEP: i64 = 300;
const T0: i64 = 1_700_000_000;

/// Deterministic noise in [-0.5, 0.5) (splitmix64).
fn noise(i: u64) -> f64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

fn daily(i: usize) -> f64 {
    100.0 + 20.0 * (i as f64 / 288.0 * std::f64::consts::TAU).sin() + 2.0 * noise(i as u64)
}

fn run(values: &[f64], cfg: &ModelConfig) -> (SeriesDetector, Vec<Evaluation>) {
    let mut det = SeriesDetector::new(cfg, STEP as f64);
    let evals = values
        .iter()
        .enumerate()
        .map(|(i, &v)| det.observe(T0 + i as i64 * STEP, v))
        .collect();
    (det, evals)
}

fn anomalous_at(evals: &[Evaluation], from: usize) -> Vec<usize> {
    (from..evals.len())
        .filter(|&i| evals[i].anomalous)
        .collect()
}

#[test]
fn daily_season_is_detected_and_a_spike_is_found_where_it_is() {
    let mut y: Vec<f64> = (0..288 * 5).map(daily).collect();
    let spike = 288 * 4 + 100;
    y[spike] += 60.0;
    let (det, evals) = run(&y, &ModelConfig::default());
    assert_eq!(det.model_kind(), ModelKind::SeasonalHoltWinters);
    assert_eq!(det.period(), 288);
    // the spike: scored highest, flagged within the `consecutive` points after it
    let after_fit = 288 * 2 + 20;
    let best = (after_fit..y.len()).max_by(|&a, &b| evals[a].score.total_cmp(&evals[b].score));
    assert_eq!(best, Some(spike));
    assert!(
        evals[spike].score > 0.8,
        "spike score {}",
        evals[spike].score
    );
    assert!(evals[spike].value > evals[spike].upper, "outside the band");
    // flagged at the spike (after `consecutive` points) and while the model recovers from it
    let flagged = anomalous_at(&evals, after_fit);
    assert!(
        !flagged.is_empty() && flagged.iter().all(|&i| (spike..spike + 15).contains(&i)),
        "flagged {flagged:?}"
    );
    assert_eq!(evals[flagged[0]].severity, Some(Severity::Critical));
    // one onset for the event
    let onsets: Vec<usize> = (after_fit..y.len())
        .filter(|&i| evals[i].onset_score > 0.6)
        .collect();
    assert_eq!(onsets, vec![spike]);
}

#[test]
fn trend_with_a_level_shift_is_flagged_at_the_shift_only() {
    let shift = 1500;
    let y: Vec<f64> = (0..2000)
        .map(|i| 10.0 + 0.01 * i as f64 + noise(i as u64) + if i >= shift { 8.0 } else { 0.0 })
        .collect();
    let (det, evals) = run(&y, &ModelConfig::default());
    assert_eq!(det.model_kind(), ModelKind::NonSeasonal);
    let flagged = anomalous_at(&evals, 300);
    assert!(!flagged.is_empty(), "shift not flagged");
    assert!(
        flagged.iter().all(|&i| (shift..shift + 30).contains(&i)),
        "flagged {flagged:?}"
    );
    // the trend is followed: no drift in the forecast error before the shift
    let before = &evals[1000..shift];
    let mean_err = before.iter().map(|e| e.value - e.expected).sum::<f64>() / before.len() as f64;
    assert!(mean_err.abs() < 0.3, "mean error {mean_err}");
}

#[test]
fn gaps_and_nans_are_skipped_and_a_later_spike_is_still_found() {
    let mut det = SeriesDetector::new(&ModelConfig::default(), STEP as f64);
    let mut flagged = Vec::new();
    let mut i = 0usize;
    while i < 288 * 4 {
        // a four-hour hole in the timestamps on day 3, NaN values now and then
        if (288 * 2 + 150..288 * 2 + 198).contains(&i) {
            i += 1;
            continue;
        }
        let mut v = if i.is_multiple_of(97) {
            f64::NAN
        } else {
            daily(i)
        };
        if i == 288 * 3 + 200 {
            v += 80.0;
        }
        let e = det.observe(T0 + i as i64 * STEP, v);
        if v.is_nan() {
            assert_eq!(e.score, 0.0);
            assert!(!e.anomalous);
        }
        assert!((0.0..=1.0).contains(&e.score), "score {} at {i}", e.score);
        if e.anomalous && i > 288 * 2 {
            flagged.push(i);
        }
        i += 1;
    }
    assert_eq!(det.period(), 288, "the hole keeps the phase");
    let spike = 288 * 3 + 200;
    assert!(
        !flagged.is_empty() && flagged.iter().all(|&i| (spike..spike + 15).contains(&i)),
        "flagged {flagged:?}"
    );
}

#[test]
fn degrades_to_robust_median_mad_then_holt_with_little_history() {
    let cfg = ModelConfig::default();
    let mut det = SeriesDetector::new(&cfg, 60.0);
    let first = det.observe(T0, 5.0);
    assert_eq!(first.model, ModelKind::WarmingUp);
    assert_eq!(first.score, 0.0);
    assert!(!first.anomalous && first.expected.is_nan());
    for i in 1..30 {
        det.observe(T0 + i * 60, 5.0 + noise(i as u64));
    }
    let e = det.observe(T0 + 30 * 60, 5.0 + noise(30));
    assert_eq!(e.model, ModelKind::RobustMad);
    assert!((e.expected - 5.0).abs() < 0.3 && e.lower < e.expected && e.upper > e.expected);
    let spike = det.observe(T0 + 31 * 60, 50.0);
    assert!(
        spike.score > 0.8,
        "robust model scores the spike: {}",
        spike.score
    );
    for i in 32..200 {
        det.observe(T0 + i * 60, 5.0 + noise(i as u64));
    }
    assert_eq!(
        det.model_kind(),
        ModelKind::NonSeasonal,
        "no season in noise"
    );
    assert_eq!(ModelKind::NonSeasonal.to_string(), "holt");
    assert_eq!(ModelKind::RobustMad.as_str(), "robust_mad");
}

#[test]
fn constant_and_empty_series_never_alert() {
    let (_, evals) = run(&vec![42.0; 2000], &ModelConfig::default());
    assert!(evals.iter().all(|e| !e.anomalous && e.score.is_finite()));
    assert!(
        evals.iter().all(|e| e.score < 0.5),
        "constant series scores low"
    );
    let (det, evals) = run(&[], &ModelConfig::default());
    assert!(evals.is_empty());
    assert_eq!(det.model_kind(), ModelKind::WarmingUp);
    let (_, evals) = run(&vec![f64::NAN; 500], &ModelConfig::default());
    assert!(evals.iter().all(|e| e.score == 0.0 && !e.anomalous));
}

#[test]
fn edge_inputs_do_not_panic_and_scores_stay_in_range() {
    let mut y = Vec::new();
    for i in 0..3000u64 {
        y.push(match i % 11 {
            0 => f64::MAX,
            1 => -f64::MAX,
            2 => f64::INFINITY,
            3 => f64::NEG_INFINITY,
            4 => 1e300 * noise(i),
            5 => f64::MIN_POSITIVE,
            6 => 0.0,
            _ => noise(i),
        });
    }
    let weird = ModelConfig {
        sensitivity: 0.0,
        consecutive: 0,
        warmup_points: 0,
        min_history: 0,
        history_points: 0,
        refit_every: 0,
        min_period: 0,
        max_period: 0,
        scale_halflife: f64::NAN,
        short_window: 0,
        suppress_points: 0,
        calib_halflife: -1.0,
        update_clip: f64::NAN,
        ..ModelConfig::default()
    };
    for cfg in [ModelConfig::default(), weird] {
        for step in [300.0, 0.0, f64::NAN, -5.0] {
            let mut det = SeriesDetector::new(&cfg, step);
            for (i, &v) in y.iter().enumerate() {
                // timestamps jump back and repeat now and then
                let ts = T0 + (i as i64 % 1000) * 60;
                let e = det.observe(ts, v);
                assert!(
                    e.score.is_finite() && (0.0..=1.0).contains(&e.score),
                    "score {} at {i}",
                    e.score
                );
                assert!((0.0..=1.0).contains(&e.onset_score));
                assert!(e.deviation.is_finite());
            }
        }
    }
}

#[test]
fn evaluations_use_only_earlier_points() {
    let a: Vec<f64> = (0..1500).map(daily).collect();
    let mut b = a.clone();
    for v in &mut b[1000..] {
        *v = -*v * 3.0;
    }
    let (_, ea) = run(&a, &ModelConfig::default());
    let (_, eb) = run(&b, &ModelConfig::default());
    // compare through Debug: NaN fields (warm-up) are not equal to themselves
    for i in 0..1000 {
        assert_eq!(
            format!("{:?}", ea[i]),
            format!("{:?}", eb[i]),
            "the future changed point {i}"
        );
    }
    assert_ne!(ea[1000].score, eb[1000].score);
}

#[test]
fn counters_are_differenced_and_resets_are_not_anomalies() {
    let cfg = ModelConfig {
        counter: true,
        ..ModelConfig::default()
    };
    let mut total = 0.0;
    let mut y = Vec::new();
    for i in 0..1500u64 {
        if i == 1000 {
            total = 0.0; // process restart
        }
        total += 10.0 + noise(i);
        y.push(total);
    }
    let (_, evals) = run(&y, &cfg);
    assert!(
        anomalous_at(&evals, 200).is_empty(),
        "{:?}",
        anomalous_at(&evals, 200)
    );
    // a burst in the rate is found
    let mut y2 = y.clone();
    for v in &mut y2[1200..] {
        *v += 200.0;
    }
    let (_, evals) = run(&y2, &cfg);
    assert!(evals[1200].anomalous || evals[1201].anomalous);
}

#[test]
fn config_rejects_unknown_keys_and_fills_defaults() {
    let cfg: ModelConfig = serde_yaml::from_str("sensitivity: 4\nconsecutive: 3\n").expect("valid");
    assert_eq!(cfg.sensitivity, 4.0);
    assert_eq!(cfg.consecutive, 3);
    assert_eq!(cfg.min_history, ModelConfig::default().min_history);
    let err = serde_yaml::from_str::<ModelConfig>("sensitivty: 4\n").expect_err("typo");
    assert!(err.to_string().contains("sensitivty"), "{err}");
}

#[test]
fn a_huge_spike_does_not_keep_the_series_flagged() {
    // an isolated spike of hundreds of standard deviations moves the state by at most
    // `update_clip` of them, so only the points whose `short_window` mean or `likelihood_window`
    // mean of scores still holds the spike stay flagged (`consecutive: 2` delays the run by one)
    for seasonal in [true, false] {
        let mut y: Vec<f64> = (0..288 * 5)
            .map(|i| {
                if seasonal {
                    daily(i)
                } else {
                    100.0 + 2.0 * noise(i as u64)
                }
            })
            .collect();
        let spike = 288 * 4 + 100;
        y[spike] += 200.0;
        let cfg = ModelConfig::default();
        let hold = cfg.short_window.max(cfg.likelihood_window);
        let (_, evals) = run(&y, &cfg);
        let flagged = anomalous_at(&evals, 700);
        assert!(
            !flagged.is_empty() && flagged.iter().all(|&i| (spike..=spike + hold).contains(&i)),
            "seasonal {seasonal}: flagged {flagged:?}"
        );
        // without the clip the level is dragged along for tens of points
        let unclipped = ModelConfig {
            update_clip: 0.0,
            ..ModelConfig::default()
        };
        let (_, evals) = run(&y, &unclipped);
        assert!(anomalous_at(&evals, 700).len() > 10);
    }
}

/// The demo-payment p95 of an end-to-end run (`testdata/e2e/payment_p95.csv`, 4 s steps, the
/// e2e detector's `min_history: 30`): at the compressed day's traffic trough the p95 of a 20 s
/// window rests on ~40 requests and dips by 12 %. That dip alerted; latency alerts only upward.
#[test]
fn a_latency_dip_at_the_traffic_trough_alerts_only_when_dips_may_alert() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/e2e/payment_p95.csv"
    ))
    .expect("fixture");
    let points: Vec<(i64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let (t, v) = l.split_once(',').expect("two columns");
            (t.parse().expect("timestamp"), v.parse().expect("value"))
        })
        .collect();
    let flagged = |direction, alert_repeats| {
        let cfg = ModelConfig {
            min_history: 30,
            direction,
            alert_repeats,
            ..ModelConfig::default()
        };
        let mut det = SeriesDetector::new(&cfg, 4.0);
        points
            .iter()
            .filter(|&&(t, v)| det.observe(t, v).anomalous)
            .map(|&(t, _)| t)
            .collect::<Vec<_>>()
    };
    // every run may alert (the repeat rule off), so only `direction` decides
    assert!(
        !flagged(Direction::Both, true).is_empty(),
        "the dip is an anomaly when dips may alert"
    );
    assert_eq!(flagged(Direction::Up, true), Vec::<i64>::new());
    // with the defaults the dip is not an event of its own either: it comes 15 points after a
    // significant onset (score 0.52), within `refractory_points`, so its run holds no onset
    assert_eq!(flagged(Direction::Both, false), Vec::<i64>::new());
}

/// The alert rule's repeat handling (`model::repeat`): a spike like one alerted shortly before
/// repeats it and does not alert; a clearly larger one, or any after `suppress_points`, does;
/// `alert_repeats: true` alerts for every run.
#[test]
fn a_repeated_spike_alerts_once_unless_clearly_larger_or_later() {
    let base: Vec<f64> = (0..1200).map(|i| 100.0 + 2.0 * noise(i as u64)).collect();
    let alert_starts = |y: &[f64], cfg: &ModelConfig| {
        let (_, evals) = run(y, cfg);
        let mut starts = Vec::new();
        for i in 1..evals.len() {
            if evals[i].anomalous && !evals[i - 1].anomalous {
                starts.push(i);
            }
        }
        starts
    };
    let defaults = ModelConfig::default();
    let mut y = base.clone();
    y[500] += 30.0;
    y[600] += 30.0; // a repeat, 100 points later
    y[1150] += 30.0; // 650 points later: beyond suppress_points (400)
    let starts = alert_starts(&y, &defaults);
    assert!(
        starts.iter().any(|&i| (500..505).contains(&i)),
        "{starts:?}"
    );
    assert!(
        !starts.iter().any(|&i| (600..605).contains(&i)),
        "{starts:?}"
    );
    assert!(
        starts.iter().any(|&i| (1150..1155).contains(&i)),
        "{starts:?}"
    );
    let every_run = ModelConfig {
        alert_repeats: true,
        ..ModelConfig::default()
    };
    let starts = alert_starts(&y, &every_run);
    assert!(
        starts.iter().any(|&i| (600..605).contains(&i)),
        "{starts:?}"
    );
    // a clearly larger spike soon after is a new event
    let mut y = base;
    y[500] += 30.0;
    y[600] += 300.0;
    let starts = alert_starts(&y, &defaults);
    assert!(
        starts.iter().any(|&i| (600..605).contains(&i)),
        "{starts:?}"
    );
}

/// A run of high scores must start beyond the band on an alerting side: a spike starts it (and
/// the points after it, still carrying the spike in their window, continue it), a point inside
/// the band or on the other side never does.
#[test]
fn an_alert_starts_only_beyond_the_band_on_an_alerting_side() {
    let y: Vec<f64> = (0..600).map(|i| 100.0 + 2.0 * noise(i as u64)).collect();
    for (direction, delta, alerts) in [
        (Direction::Both, 40.0, true),
        (Direction::Both, -40.0, true),
        (Direction::Up, 40.0, true),
        (Direction::Up, -40.0, false),
        (Direction::Down, -40.0, true),
        (Direction::Down, 40.0, false),
    ] {
        let mut y = y.clone();
        for v in &mut y[500..503] {
            *v += delta;
        }
        let cfg = ModelConfig {
            direction,
            ..ModelConfig::default()
        };
        let (_, evals) = run(&y, &cfg);
        let flagged = anomalous_at(&evals, 200);
        // Three points are learnt as a level shift (`update_clip`), so the return to the old level
        // is itself a shift, which `up` may report after a dip: only the block itself is checked.
        let during_block = flagged.iter().any(|i| (500..503).contains(i));
        assert_eq!(during_block, alerts, "{direction:?} {delta}: {flagged:?}");
        // Each flagged point ends a chain of high scores that holds a point beyond the band on
        // an alerting side (where the run started).
        let alerting_side = |e: &Evaluation| match direction {
            Direction::Both => e.value < e.lower || e.value > e.upper,
            Direction::Up => e.value > e.upper,
            Direction::Down => e.value < e.lower,
        };
        for &i in &flagged {
            let started_beyond = (0..=i)
                .rev()
                .take_while(|&j| evals[j].score >= cfg.score_threshold)
                .any(|j| alerting_side(&evals[j]));
            assert!(
                started_beyond,
                "{direction:?} {delta}: run to {i} never left the band"
            );
        }
    }
}

/// Issue 20: a series that was exactly constant for its whole fit window (a healthy service's
/// error ratio) has no known residual variability. Its first departure must alert, and must then
/// give the band a width: before the fix the scale stayed at the floor (about 1e-9), every later
/// point was `anomalous` with |z| at the cap, also where the value was back at the old level.
#[test]
fn a_constant_series_learns_a_scale_from_its_first_departure() {
    let after = 40; // points after the departure ends within which alerts must stop
    for (base, departure) in [(0.0, 0.2), (5.0, 1.0)] {
        // a burst of 15 points (0.5-1.5 times `departure`) on a constant series, back to the
        // old level, then single blips of the burst's size
        let mut y = vec![base; 400];
        y.extend((0..15).map(|i| base + departure * (1.0 + noise(i)).max(0.5)));
        y.extend(vec![base; 300]);
        for i in 0..300 {
            y.push(if i % 100 == 50 {
                base + departure
            } else {
                base
            });
        }
        let (_, evals) = run(&y, &ModelConfig::default());
        let flagged = anomalous_at(&evals, 0);
        assert!(
            flagged.iter().any(|i| (400..415).contains(i)),
            "base {base}: burst not flagged: {flagged:?}"
        );
        assert!(
            flagged.iter().all(|&i| (400..415 + after).contains(&i)),
            "base {base}: flagged after the burst: {flagged:?}"
        );
        for e in &evals[415 + after..] {
            assert!(
                e.upper - e.lower > 1e-3 * departure,
                "base {base}: band width {} at {}",
                e.upper - e.lower,
                e.timestamp
            );
            assert!(
                e.deviation.abs() < 1e3,
                "base {base}: |z| {} at {}",
                e.deviation,
                e.timestamp
            );
        }
    }
    // a step to a new constant level is flagged at its start (a critical point: at once), then
    // learnt
    let mut y = vec![5.0; 400];
    y.extend(vec![6.0; 400]);
    let (_, evals) = run(&y, &ModelConfig::default());
    let flagged = anomalous_at(&evals, 0);
    assert!(
        flagged.first().is_some_and(|&i| i == 400),
        "step: {flagged:?}"
    );
    assert!(flagged.iter().all(|&i| i < 400 + 200), "step: {flagged:?}");
    assert!(evals[799].upper - evals[799].lower > 0.0);
}

/// `consecutive` waits for a second point only near the threshold: a point whose surprise
/// reaches `critical_sensitivity` is anomalous at once, a warning-level one is not.
#[test]
fn a_critical_point_alerts_at_once_a_warning_level_one_waits() {
    let base: Vec<f64> = (0..600).map(|i| 100.0 + 2.0 * noise(i as u64)).collect();
    let cfg = ModelConfig::default();
    let (_, evals) = run(&base, &cfg);
    let sd = (evals[499].upper - evals[499].expected) / cfg.sensitivity;
    let spike = |sigmas: f64| {
        let mut y = base.clone();
        y[500] = evals[499].expected + sigmas * sd;
        run(&y, &cfg).1.swap_remove(500)
    };
    let critical = spike(40.0);
    assert!(critical.anomalous, "{critical:?}");
    assert_eq!(critical.severity, Some(Severity::Critical));
    // a surprise between the threshold's and the critical one (score 0.6 .. 2/3)
    let warning = (12..40)
        .map(|k| spike(k as f64 / 4.0))
        .find(|e| e.score >= cfg.score_threshold && e.score < 2.0 / 3.0)
        .expect("a warning-level spike");
    assert!(!warning.anomalous, "{warning:?}");
}
