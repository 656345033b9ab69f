//! Our Holt-Winters recursion against statsmodels' `ExponentialSmoothing`: the same parameters
//! and initial states must give the same fitted values within 1e-6.
//!
//! The fixture `testdata/statsmodels_parity.json` is made by `bench/statsmodels_parity.py`
//! (rerun it with `.venv/bin/python anomaly-detector/bench/statsmodels_parity.py`; `--check`
//! compares a fresh statsmodels run with the committed file). Run: `cargo test -p anomaly-detector
//! --test model_statsmodels_parity`.

use anomaly_detector::model::hw::{filter, HwParams, HwState};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    period: usize,
    alpha: f64,
    beta: Option<f64>,
    gamma: Option<f64>,
    phi: f64,
    initial_level: f64,
    initial_trend: f64,
    initial_seasons: Vec<f64>,
    y: Vec<f64>,
    fitted: Vec<f64>,
}

#[test]
fn fitted_values_match_statsmodels_within_1e6() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/statsmodels_parity.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture testdata/statsmodels_parity.json");
    let fixture: Fixture = serde_json::from_str(&text).expect("valid fixture");
    assert_eq!(fixture.cases.len(), 5, "fixture has all cases");
    for case in &fixture.cases {
        assert_eq!(case.initial_seasons.len(), case.period, "{}", case.name);
        let params = HwParams {
            alpha: case.alpha,
            beta: case.beta,
            gamma: case.gamma,
            phi: case.phi,
        };
        let mut state = HwState::new(
            case.initial_level,
            case.initial_trend,
            case.initial_seasons.clone(),
        );
        let ours = filter(&case.y, &params, &mut state);
        assert_eq!(ours.len(), case.fitted.len(), "{}", case.name);
        let worst = ours
            .iter()
            .zip(&case.fitted)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-6,
            "{}: max |ours - statsmodels| = {worst:e}",
            case.name
        );
    }
}

#[test]
fn a_changed_parameter_breaks_parity() {
    // guards the test above against passing vacuously
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/statsmodels_parity.json"
    ))
    .expect("fixture");
    let fixture: Fixture = serde_json::from_str(&text).expect("valid fixture");
    let case = &fixture.cases[0];
    let params = HwParams {
        alpha: case.alpha + 0.01,
        beta: case.beta,
        gamma: case.gamma,
        phi: case.phi,
    };
    let mut state = HwState::new(
        case.initial_level,
        case.initial_trend,
        case.initial_seasons.clone(),
    );
    let ours = filter(&case.y, &params, &mut state);
    let worst = ours
        .iter()
        .zip(&case.fitted)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst > 1e-6);
}
