//! Query-parameter parsing and validation shared by the insights handlers: `from`, `to`,
//! `step`, `format`, and the check that a request names only known parameters. Every error is
//! an [`ApiError`] naming the parameter and what it accepts.
//!
//! Tests: `cargo test -p anomaly-detector insights::range::`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::InsightsConfig;

/// A 4xx/5xx answer: `{"error", "parameter", "accepted"}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// HTTP status (not serialized).
    #[serde(skip)]
    pub status: u16,
    /// What is wrong and what to do.
    pub error: String,
    /// The parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The values or forms the parameter accepts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<String>,
    /// Status of the data sources, when the error is theirs (503).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub sources: Option<BTreeMap<String, super::SourceStatus>>,
}

impl ApiError {
    /// 400 for `parameter`, accepting `accepted`.
    pub fn bad(parameter: &str, error: impl Into<String>, accepted: &[&str]) -> Self {
        Self {
            status: 400,
            error: error.into(),
            parameter: Some(parameter.to_string()),
            accepted: accepted.iter().map(|s| s.to_string()).collect(),
            sources: None,
        }
    }

    /// An error without a parameter.
    pub fn status(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            parameter: None,
            accepted: Vec::new(),
            sources: None,
        }
    }
}

/// Raw query parameters.
pub type Params = BTreeMap<String, String>;

/// Fails when `params` has a key outside `allowed`.
///
/// # Errors
/// 400 naming the first unknown parameter and the allowed ones.
pub fn only(params: &Params, allowed: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) if allowed.is_empty() => Err(ApiError::bad(
            k,
            format!("unknown parameter {k:?}"),
            &["no query parameters"],
        )),
        Some(k) => Err(ApiError::bad(
            k,
            format!("unknown parameter {k:?}"),
            allowed,
        )),
        None => Ok(()),
    }
}

/// A validated time range: `[from, to]` in unix seconds, evaluated every `step` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    /// Start (unix seconds).
    pub from: i64,
    /// End (unix seconds).
    pub to: i64,
    /// Resolution (seconds).
    pub step: i64,
}

impl TimeRange {
    /// Length in seconds.
    pub fn len(&self) -> i64 {
        self.to - self.from
    }

    /// Whether the range is empty (never, once validated).
    pub fn is_empty(&self) -> bool {
        self.to <= self.from
    }

    /// Number of evaluation points (`from`, `from + step`, ... up to `to`).
    pub fn points(&self) -> u64 {
        (self.len() / self.step) as u64 + 1
    }
}

const TIME_FORMS: [&str; 2] = [
    "unix seconds, e.g. 1700000000",
    "RFC 3339, e.g. 2024-05-01T12:00:00Z",
];
const STEP_FORMS: [&str; 2] = ["seconds, e.g. 15", "a duration, e.g. 15s, 5m, 1h"];

/// Parses a time parameter: unix seconds or RFC 3339.
///
/// # Errors
/// 400 naming `name`.
pub fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(x) = v.parse::<f64>() {
        if (0.0..1e11).contains(&x) {
            return Ok(x.floor() as i64);
        }
    }
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| ApiError::bad(name, format!("{name}={v:?} is not a time"), &TIME_FORMS))
}

fn parse_step(v: &str) -> Result<i64, ApiError> {
    let secs = match v.parse::<f64>() {
        Ok(x) if x.is_finite() => Some(x),
        Ok(_) => None,
        Err(_) => humantime::parse_duration(v).ok().map(|d| d.as_secs_f64()),
    };
    match secs {
        Some(s) if (1.0..=1e9).contains(&s) => Ok(s.floor() as i64),
        Some(_) => Err(ApiError::bad(
            "step",
            format!("step={v:?} must be at least 1s"),
            &STEP_FORMS,
        )),
        None => Err(ApiError::bad(
            "step",
            format!("step={v:?} is not a duration"),
            &STEP_FORMS,
        )),
    }
}

fn human(secs: i64) -> String {
    humantime::format_duration(Duration::from_secs(secs.max(0) as u64)).to_string()
}

/// Reads `from`, `to` and `step` from `params` (defaults: the last `default_range` up to `now`,
/// the finest step within `max_points`) and checks them against `cfg`.
///
/// # Errors
/// 400 naming `from`, `to` or `step`.
pub fn time_range(params: &Params, cfg: &InsightsConfig, now: i64) -> Result<TimeRange, ApiError> {
    let to = match params.get("to") {
        Some(v) => parse_time("to", v)?,
        None => now,
    };
    let from = match params.get("from") {
        Some(v) => parse_time("from", v)?,
        None => to - cfg.default_range.as_secs() as i64,
    };
    if from >= to {
        return Err(ApiError::bad(
            "from",
            format!("from ({from}) must be before to ({to})"),
            &TIME_FORMS,
        ));
    }
    let max = cfg.max_range.as_secs() as i64;
    if to - from > max {
        return Err(ApiError::bad(
            "from",
            format!(
                "the range {} is longer than the maximum {}; narrow from/to",
                human(to - from),
                human(max)
            ),
            &[&format!("to - from <= {max} s")],
        ));
    }
    let max_points = cfg.max_points as i64;
    // Smallest step that keeps (to - from) / step + 1 within max_points.
    let min_step = ((to - from) + max_points - 2) / (max_points - 1);
    let step = match params.get("step") {
        Some(v) => {
            let s = parse_step(v)?;
            if s < min_step.max(1) {
                return Err(ApiError::bad(
                    "step",
                    format!(
                        "step {} gives {} points over {}, more than the maximum {max_points}",
                        human(s),
                        (to - from) / s + 1,
                        human(to - from)
                    ),
                    &[&format!("step >= {}s for this range", min_step.max(1))],
                ));
            }
            s
        }
        None => (cfg.default_step.as_secs() as i64).max(min_step),
    };
    Ok(TimeRange { from, to, step })
}

/// Answer formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/csv` (RFC 4180).
    Csv,
}

/// `?format=json|csv`, else the `Accept` header (`text/csv` wins when listed before JSON).
///
/// # Errors
/// 400 for another `format`.
pub fn format(params: &Params, accept: Option<&str>) -> Result<Format, ApiError> {
    match params.get("format").map(String::as_str) {
        Some("csv") => return Ok(Format::Csv),
        Some("json") => return Ok(Format::Json),
        Some(other) => {
            return Err(ApiError::bad(
                "format",
                format!("format={other:?} is not supported"),
                &["json", "csv"],
            ))
        }
        None => {}
    }
    let accept = accept.unwrap_or("");
    let csv = accept.find("text/csv");
    let json = accept.find("application/json");
    Ok(match (csv, json) {
        (Some(c), Some(j)) if c < j => Format::Csv,
        (Some(_), None) => Format::Csv,
        _ => Format::Json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_and_forms() {
        let cfg = InsightsConfig::default();
        let r = time_range(&p(&[]), &cfg, 100_000).unwrap();
        assert_eq!((r.from, r.to, r.step), (100_000 - 86_400, 100_000, 15));
        assert_eq!(r.points(), 5761);
        let r = time_range(
            &p(&[
                ("from", "2024-05-01T00:00:00Z"),
                ("to", "1714525200"),
                ("step", "1m"),
            ]),
            &cfg,
            0,
        )
        .unwrap();
        assert_eq!((r.from, r.to, r.step), (1_714_521_600, 1_714_525_200, 60));
        // 31 days at the default step would exceed max_points: the step grows instead.
        let r = time_range(&p(&[("from", "0"), ("to", "2678400")]), &cfg, 0).unwrap();
        assert!(r.points() <= 11_000, "{r:?}");
    }

    #[test]
    fn errors_name_the_parameter() {
        let cfg = InsightsConfig::default();
        let e = time_range(&p(&[("from", "200"), ("to", "100")]), &cfg, 0).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("from"));
        let e = time_range(&p(&[("from", "0"), ("to", "99999999")]), &cfg, 0).unwrap_err();
        assert!(e.error.contains("maximum"), "{e:?}");
        let e = time_range(
            &p(&[("from", "0"), ("to", "86400"), ("step", "1")]),
            &cfg,
            0,
        )
        .unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("step"));
        assert!(e.accepted[0].contains("step >= 8s"), "{e:?}");
        let e = time_range(&p(&[("to", "yesterday")]), &cfg, 0).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("to"));
        let e = only(&p(&[("bogus", "1")]), &["from"]).unwrap_err();
        assert_eq!(e.parameter.as_deref(), Some("bogus"));
        assert_eq!(e.accepted, vec!["from"]);
    }

    #[test]
    fn format_negotiation() {
        assert_eq!(format(&p(&[]), Some("text/csv")).unwrap(), Format::Csv);
        assert_eq!(format(&p(&[]), Some("*/*")).unwrap(), Format::Json);
        assert_eq!(
            format(&p(&[("format", "csv")]), Some("application/json")).unwrap(),
            Format::Csv
        );
        assert!(format(&p(&[("format", "xml")]), None).is_err());
    }
}
