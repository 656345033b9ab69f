//! SLOs read from a Sloth `prometheus/v1` spec (`prometheus/slos.yaml`: one YAML document per
//! service), for the summary's availability and error-budget figures. Only what the summary
//! needs is read (service, SLO name, objective, and the SLI's `events.error_query` /
//! `events.total_query` or `raw.error_ratio_query`); Sloth's other keys (alerting, labels,
//! ...) are accepted and ignored, since the file is Sloth's format, not ours.
//!
//! The SLI queries contain Sloth's `{{.window}}` placeholder; [`Slo::error_ratio_query`]
//! replaces it with the answer's range, so the ratio is the one over exactly that range.
//!
//! Tests: `cargo test -p anomaly-detector slo::` (the fixture `testdata/insights_slos.yaml`).

use std::path::Path;

use serde::Deserialize;

/// Errors reading an SLO file.
#[derive(Debug, thiserror::Error)]
pub enum SloError {
    /// The file could not be read.
    #[error("cannot read SLO file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not a Sloth `prometheus/v1` spec.
    #[error("SLO file {path}, document {index}: {message} (expected Sloth prometheus/v1: version, service, slos[].name/objective/sli)")]
    Parse {
        /// The file.
        path: String,
        /// 0-based document index.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// One SLO of one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Service as named in the spec (`service:`).
    pub service: String,
    /// SLO name, e.g. `requests-availability`.
    pub name: String,
    /// Objective in percent, e.g. 99.9.
    pub objective: f64,
    /// The SLI.
    pub sli: Sli,
}

/// How an SLI is computed.
#[derive(Debug, Clone, PartialEq)]
pub enum Sli {
    /// Bad events over all events.
    Events {
        /// Bad events rate (with `{{.window}}`).
        error_query: String,
        /// All events rate (with `{{.window}}`).
        total_query: String,
    },
    /// A ready error ratio.
    Raw {
        /// Error ratio (with `{{.window}}`).
        error_ratio_query: String,
    },
}

impl Slo {
    /// PromQL of the error ratio over `window_secs`.
    pub fn error_ratio_query(&self, window_secs: i64) -> String {
        let w = |q: &str| q.replace("{{.window}}", &format!("{window_secs}s"));
        match &self.sli {
            Sli::Events {
                error_query,
                total_query,
            } => format!("({}) / ({})", w(error_query), w(total_query)),
            Sli::Raw { error_ratio_query } => w(error_ratio_query),
        }
    }

    /// Share of the error budget left for an observed error ratio (1 = untouched, 0 = spent,
    /// negative = overspent).
    pub fn budget_remaining(&self, error_ratio: f64) -> f64 {
        let budget = 1.0 - self.objective / 100.0;
        if budget <= 0.0 {
            return if error_ratio > 0.0 {
                f64::NEG_INFINITY
            } else {
                1.0
            };
        }
        1.0 - error_ratio / budget
    }
}

#[derive(Deserialize)]
struct Spec {
    version: String,
    service: String,
    #[serde(default)]
    slos: Vec<SpecSlo>,
}

#[derive(Deserialize)]
struct SpecSlo {
    name: String,
    objective: f64,
    sli: SpecSli,
}

#[derive(Deserialize)]
struct SpecSli {
    #[serde(default)]
    events: Option<SpecEvents>,
    #[serde(default)]
    raw: Option<SpecRaw>,
}

#[derive(Deserialize)]
struct SpecEvents {
    error_query: String,
    total_query: String,
}

#[derive(Deserialize)]
struct SpecRaw {
    error_ratio_query: String,
}

/// Parses the text of a Sloth spec file (one or more YAML documents).
///
/// # Errors
/// [`SloError::Parse`] naming the document.
pub fn parse(text: &str, path: &str) -> Result<Vec<Slo>, SloError> {
    let mut out = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let err = |message: String| SloError::Parse {
            path: path.to_string(),
            index,
            message,
        };
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| err(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let spec: Spec = serde_yaml::from_value(value).map_err(|e| err(e.to_string()))?;
        if spec.version != "prometheus/v1" {
            return Err(err(format!(
                "version {:?} is not prometheus/v1",
                spec.version
            )));
        }
        for s in spec.slos {
            let sli = match (s.sli.events, s.sli.raw) {
                (Some(e), None) => Sli::Events {
                    error_query: e.error_query,
                    total_query: e.total_query,
                },
                (None, Some(r)) => Sli::Raw {
                    error_ratio_query: r.error_ratio_query,
                },
                _ => {
                    return Err(err(format!(
                        "slo {:?}: sli needs exactly one of events or raw",
                        s.name
                    )))
                }
            };
            if !(0.0..=100.0).contains(&s.objective) {
                return Err(err(format!(
                    "slo {:?}: objective {} is not a percentage",
                    s.name, s.objective
                )));
            }
            out.push(Slo {
                service: spec.service.clone(),
                name: s.name,
                objective: s.objective,
                sli,
            });
        }
    }
    Ok(out)
}

/// Reads `path`; a missing file means no SLOs (`Ok(None)`).
///
/// # Errors
/// [`SloError`] when the file exists but cannot be read or parsed.
pub fn load(path: &Path) -> Result<Option<Vec<Slo>>, SloError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SloError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../testdata/insights_slos.yaml");

    #[test]
    fn reads_the_fixture() {
        let slos = parse(FIXTURE, "insights_slos.yaml").unwrap();
        let services: std::collections::BTreeSet<&str> =
            slos.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(
            services.into_iter().collect::<Vec<_>>(),
            ["demo-frontend", "demo-inventory", "demo-payment"]
        );
        let a = slos
            .iter()
            .find(|s| s.service == "demo-frontend" && s.name == "requests-availability")
            .unwrap();
        assert_eq!(a.objective, 99.9);
        let q = a.error_ratio_query(3600);
        assert!(q.contains("[3600s]") && !q.contains("{{.window}}"), "{q}");
        assert!((a.budget_remaining(0.0005) - 0.5).abs() < 1e-9);
        assert!(a.budget_remaining(0.002) < 0.0);
    }

    /// The repository's own spec (the shipped config points `insights.slo_file` at it).
    #[test]
    fn reads_the_shipped_spec() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prometheus/slos.yaml");
        let slos = load(&path).unwrap().expect("prometheus/slos.yaml exists");
        for svc in ["demo-frontend", "demo-inventory", "demo-payment"] {
            for name in ["requests-availability", "requests-latency"] {
                let s = slos
                    .iter()
                    .find(|s| s.service == svc && s.name == name)
                    .unwrap_or_else(|| panic!("{svc} {name}"));
                assert!(!s.error_ratio_query(60).contains("{{.window}}"));
            }
        }
    }

    #[test]
    fn bad_specs_are_named() {
        let err = parse(
            "version: prometheus/v1\nservice: x\nslos: [{name: a, objective: 99, sli: {}}]\n",
            "f.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("f.yaml") && err.contains("\"a\""), "{err}");
        let err = parse("version: v2\nservice: x\n", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prometheus/v1"), "{err}");
        assert!(load(Path::new("/nonexistent/slos.yaml")).unwrap().is_none());
    }
}
