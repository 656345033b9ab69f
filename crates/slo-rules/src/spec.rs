//! The Sloth `prometheus/v1` SLO spec: parsing (one or more YAML documents per file) and the
//! validation Sloth applies before it generates anything.
//!
//! Checks, each error naming the document, the key and what to do: `version` is
//! `prometheus/v1`; `service` and every SLO `name` are names (alphanumerics, `.`, `_`, `-`,
//! starting and ending alphanumeric); at least one SLO; `objective` in (0, 100]; exactly one SLI
//! type; SLI queries present, containing the `{{.window}}` placeholder and no other template
//! action, with balanced brackets and quotes; the two event queries differ; an enabled alert has
//! `alerting.name`; label names are Prometheus label names (not `__name__`) with non-empty
//! values; annotation values are not empty; SLO ids (`service-name`) are unique across the file.
//! Unknown keys are refused (Sloth silently ignores them, which hides typos).
//!
//! Not supported (refused with a message): SLI and SLO plugins (`sli.plugin`, `plugins`),
//! `infoLabels`, `interval`.
//!
//! Tests: `cargo test -p slo-rules spec::`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer};

/// The spec version this module reads.
pub const VERSION: &str = "prometheus/v1";

/// Labels or annotations: name → value, sorted by name (Sloth writes them sorted too).
pub type Labels = BTreeMap<String, String>;

/// One YAML document of a spec file: the SLOs of one service.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Must be `prometheus/v1`.
    #[serde(default)]
    pub version: String,
    /// The service the SLOs belong to (`sloth_service`).
    #[serde(default)]
    pub service: String,
    /// Labels added to every rule of the service's SLOs.
    #[serde(default, deserialize_with = "string_map")]
    pub labels: Labels,
    /// The SLOs.
    #[serde(default)]
    pub slos: Vec<Slo>,
}

/// One service level objective.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// The SLO's name (`sloth_slo`); the id is `service-name`.
    #[serde(default)]
    pub name: String,
    /// Free text; not written into the rules (as in Sloth).
    #[serde(default)]
    pub description: String,
    /// Target in per cent, in (0, 100], e.g. 99.9.
    pub objective: Option<f64>,
    /// Labels added to this SLO's rules (override the service's).
    #[serde(default, deserialize_with = "string_map")]
    pub labels: Labels,
    /// The indicator.
    #[serde(default)]
    pub sli: Sli,
    /// The alerts.
    #[serde(default)]
    pub alerting: Alerting,
}

/// The service level indicator: exactly one of `events` and `raw`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sli {
    /// Bad events / all events.
    pub events: Option<SliEvents>,
    /// An error ratio computed by the query itself.
    pub raw: Option<SliRaw>,
}

/// An SLI from two event counts; both queries use `{{.window}}` as their range.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SliEvents {
    /// Rate of bad events over `{{.window}}`.
    #[serde(default)]
    pub error_query: String,
    /// Rate of all events over `{{.window}}`.
    #[serde(default)]
    pub total_query: String,
}

/// An SLI given directly as an error ratio (0..1) over `{{.window}}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SliRaw {
    /// The error ratio query.
    #[serde(default)]
    pub error_ratio_query: String,
}

/// Alerting settings shared by the page and ticket alerts.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Alerting {
    /// The alert name (both alerts carry it; `sloth_severity` tells them apart).
    #[serde(default)]
    pub name: String,
    /// Labels of both alerts.
    #[serde(default, deserialize_with = "string_map")]
    pub labels: Labels,
    /// Annotations of both alerts (override Sloth's default `title` and `summary`).
    #[serde(default, deserialize_with = "string_map")]
    pub annotations: Labels,
    /// The page alert (fast burn).
    #[serde(default)]
    pub page_alert: Alert,
    /// The ticket alert (slow burn).
    #[serde(default)]
    pub ticket_alert: Alert,
}

/// One of the two alerts.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    /// Do not generate this alert.
    #[serde(default)]
    pub disable: bool,
    /// Labels of this alert (override `alerting.labels`).
    #[serde(default, deserialize_with = "string_map")]
    pub labels: Labels,
    /// Annotations of this alert (override `alerting.annotations`).
    #[serde(default, deserialize_with = "string_map")]
    pub annotations: Labels,
}

/// Why a spec file cannot be used. Every message names the document and the key.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A document is not valid YAML or does not have the spec's shape (unknown or mistyped key).
    #[error("{doc}: {path}: {message}")]
    Parse {
        /// Which document (`document 2`).
        doc: String,
        /// The key path (`slos[0].sli.events`), `.` for the document itself.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A value breaks one of Sloth's rules.
    #[error("{doc}: {key}: {message}")]
    Invalid {
        /// Which document (`document 1 (service "demo-frontend")`).
        doc: String,
        /// The key (`slos[1].objective`).
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The file holds no document.
    #[error("the spec file is empty: write at least one `version: \"prometheus/v1\"` document")]
    Empty,
}

/// Accepts scalar values (strings, numbers, booleans) of a string map as their text, as Sloth's
/// YAML decoder does (`tier: 2` is the label value "2").
fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    use serde::de::Error;
    let raw: Option<BTreeMap<String, serde_yaml::Value>> = Option::deserialize(d)?;
    let mut out = Labels::new();
    for (k, v) in raw.unwrap_or_default() {
        let text = match v {
            serde_yaml::Value::String(s) => s,
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            other => {
                return Err(D::Error::custom(format!(
                    "the value of {k:?} must be a string, not {}",
                    kind(&other)
                )))
            }
        };
        out.insert(k, text);
    }
    Ok(out)
}

fn kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "null",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a map",
        serde_yaml::Value::Tagged(_) => "a tagged value",
        _ => "a scalar",
    }
}

/// Keys Sloth knows that this generator deliberately does not implement, with the reason.
const UNSUPPORTED: [(&str, &str); 4] = [
    ("plugin", "SLI plugins are not supported by slo-rules: write the query as `events` or `raw`"),
    ("plugins", "SLO plugins are not supported by slo-rules: remove `plugins`"),
    ("infoLabels", "`infoLabels` is not supported by slo-rules: use `labels`"),
    ("interval", "rule group `interval` is not supported by slo-rules: the rules use Prometheus' evaluation_interval"),
];

/// Parses every YAML document of `text` (documents separated by `---`; empty ones skipped) and
/// validates each.
///
/// # Errors
/// [`SpecError`] for the first document that cannot be parsed or breaks a rule, and when two
/// documents declare the same SLO id.
pub fn parse(text: &str) -> Result<Vec<Spec>, SpecError> {
    let mut specs = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc = format!("document {}", index + 1);
        let value = serde_yaml::Value::deserialize(document).map_err(|e| SpecError::Parse {
            doc: doc.clone(),
            path: ".".to_owned(),
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let spec: Spec = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let message = UNSUPPORTED
                .iter()
                .find(|(key, _)| inner.starts_with(&format!("unknown field `{key}`")))
                .map_or(inner, |(_, why)| (*why).to_owned());
            SpecError::Parse {
                doc: doc.clone(),
                path,
                message,
            }
        })?;
        validate(&spec, &format!("{doc} (service {:?})", spec.service))?;
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err(SpecError::Empty);
    }
    let mut ids = BTreeSet::new();
    for (index, spec) in specs.iter().enumerate() {
        for (i, slo) in spec.slos.iter().enumerate() {
            let id = slo_id(spec, slo);
            if !ids.insert(id.clone()) {
                return Err(SpecError::Invalid {
                    doc: format!("document {} (service {:?})", index + 1, spec.service),
                    key: format!("slos[{i}].name"),
                    message: format!("SLO id {id:?} is declared twice: service and SLO names must be unique together"),
                });
            }
        }
    }
    Ok(specs)
}

/// The SLO id Sloth derives: `service-name` (`sloth_id`).
pub fn slo_id(spec: &Spec, slo: &Slo) -> String {
    format!("{}-{}", spec.service, slo.name)
}

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$").expect("valid regex"));
static LABEL_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z_][a-zA-Z0-9_]*$").expect("valid regex"));
static WINDOW: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{ *\.window *\}\}").expect("valid regex"));

/// Validates one parsed document; `doc` names it in errors.
///
/// # Errors
/// [`SpecError::Invalid`] for the first broken rule.
pub fn validate(spec: &Spec, doc: &str) -> Result<(), SpecError> {
    let invalid = |key: String, message: String| SpecError::Invalid {
        doc: doc.to_owned(),
        key,
        message,
    };
    if spec.version != VERSION {
        return Err(invalid(
            "version".into(),
            format!(
                "is {:?}; this generator reads Sloth specs with version: \"{VERSION}\"",
                spec.version
            ),
        ));
    }
    check_name(&spec.service).map_err(|m| invalid("service".into(), m))?;
    check_labels(&spec.labels, "labels").map_err(|(k, m)| invalid(k, m))?;
    if spec.slos.is_empty() {
        return Err(invalid(
            "slos".into(),
            "at least one SLO is required".into(),
        ));
    }
    for (i, slo) in spec.slos.iter().enumerate() {
        let at = |key: &str| format!("slos[{i}].{key}");
        check_name(&slo.name).map_err(|m| invalid(at("name"), m))?;
        check_name(&slo_id(spec, slo))
            .map_err(|m| invalid(at("name"), format!("the SLO id: {m}")))?;
        match slo.objective {
            None => {
                return Err(invalid(
                    at("objective"),
                    "is required (per cent, e.g. 99.9)".into(),
                ))
            }
            Some(o) if !(o > 0.0 && o <= 100.0) => {
                return Err(invalid(
                    at("objective"),
                    format!("is {o}; it must be > 0 and <= 100 (per cent)"),
                ))
            }
            Some(_) => {}
        }
        check_labels(&slo.labels, &at("labels")).map_err(|(k, m)| invalid(k, m))?;
        check_sli(&slo.sli).map_err(|(k, m)| invalid(at(&k), m))?;
        check_alerting(&slo.alerting).map_err(|(k, m)| invalid(at(&k), m))?;
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is required".into());
    }
    if !NAME.is_match(name) {
        return Err(format!(
            "{name:?} is not a name: it must start and end with an alphanumeric and contain only alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Checks label names and values; the error names the offending key under `at`.
pub fn check_labels(labels: &Labels, at: &str) -> Result<(), (String, String)> {
    for (k, v) in labels {
        check_label(k, v).map_err(|m| (format!("{at}.{k}"), m))?;
    }
    Ok(())
}

/// Checks one label: a Prometheus label name other than `__name__`, with a non-empty value.
///
/// # Errors
/// What is wrong with it.
pub fn check_label(name: &str, value: &str) -> Result<(), String> {
    if name == "__name__" {
        return Err("`__name__` cannot be set as a label".into());
    }
    if !LABEL_NAME.is_match(name) {
        return Err(format!(
            "{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if value.is_empty() {
        return Err("the label value is empty".into());
    }
    Ok(())
}

fn check_sli(sli: &Sli) -> Result<(), (String, String)> {
    match (&sli.events, &sli.raw) {
        (None, None) => Err((
            "sli".into(),
            "an SLI is required: `events` (error_query, total_query) or `raw` (error_ratio_query)"
                .into(),
        )),
        (Some(_), Some(_)) => Err((
            "sli".into(),
            "only one SLI type is allowed: `events` or `raw`, not both".into(),
        )),
        (Some(e), None) => {
            check_query(&e.error_query).map_err(|m| ("sli.events.error_query".into(), m))?;
            check_query(&e.total_query).map_err(|m| ("sli.events.total_query".into(), m))?;
            if e.error_query == e.total_query {
                return Err((
                    "sli.events".into(),
                    "error_query and total_query are the same query".into(),
                ));
            }
            Ok(())
        }
        (None, Some(r)) => {
            check_query(&r.error_ratio_query).map_err(|m| ("sli.raw.error_ratio_query".into(), m))
        }
    }
}

/// Checks an SLI query template: present, uses `{{.window}}`, no other template action, and
/// brackets and quotes that balance (a cheap stand-in for Sloth's PromQL parse).
fn check_query(query: &str) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err("the query is required".into());
    }
    if !WINDOW.is_match(query) {
        return Err("the query must use the {{.window}} placeholder as its range, e.g. rate(x[{{.window}}])".into());
    }
    let rest = WINDOW.replace_all(query, "1m");
    if let Some(pos) = rest.find("{{") {
        let action: String = rest[pos..].chars().take(40).collect();
        return Err(format!(
            "unknown template action near {action:?}: only {{{{.window}}}} is available"
        ));
    }
    check_brackets(&rest)
}

fn check_brackets(expr: &str) -> Result<(), String> {
    let mut stack = Vec::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                let quote = c;
                let mut closed = false;
                while let Some(s) = chars.next() {
                    if s == '\\' && quote != '`' {
                        chars.next();
                    } else if s == quote {
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(format!("unterminated {quote} string in the query"));
                }
            }
            '(' | '{' | '[' => stack.push(c),
            ')' | '}' | ']' => {
                let open = match c {
                    ')' => '(',
                    '}' => '{',
                    _ => '[',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("unbalanced {c:?} in the query"));
                }
            }
            '#' => {
                // A PromQL comment runs to the end of the line.
                for s in chars.by_ref() {
                    if s == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    match stack.pop() {
        Some(open) => Err(format!("unclosed {open:?} in the query")),
        None => Ok(()),
    }
}

fn check_alerting(a: &Alerting) -> Result<(), (String, String)> {
    let enabled = !a.page_alert.disable || !a.ticket_alert.disable;
    if enabled && a.name.is_empty() {
        return Err((
            "alerting.name".into(),
            "an alert name is required while the page or ticket alert is enabled (or set `disable: true` on both)".into(),
        ));
    }
    check_labels(&a.labels, "alerting.labels")?;
    check_annotations(&a.annotations, "alerting.annotations")?;
    for (alert, at) in [
        (&a.page_alert, "alerting.page_alert"),
        (&a.ticket_alert, "alerting.ticket_alert"),
    ] {
        check_labels(&alert.labels, &format!("{at}.labels"))?;
        check_annotations(&alert.annotations, &format!("{at}.annotations"))?;
    }
    Ok(())
}

fn check_annotations(annotations: &Labels, at: &str) -> Result<(), (String, String)> {
    for (k, v) in annotations {
        if !LABEL_NAME.is_match(k) {
            return Err((
                format!("{at}.{k}"),
                format!("{k:?} is not a valid annotation name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            ));
        }
        if v.is_empty() {
            return Err((format!("{at}.{k}"), "the annotation value is empty".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version: "prometheus/v1"
service: "svc"
labels:
  tier: 2
slos:
  - name: "availability"
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(x{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(x[{{ .window }}]))
    alerting:
      name: Burn
      page_alert:
        labels:
          severity: page
      ticket_alert:
        disable: true
"#;

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_spec_parses_with_scalar_labels_as_text() {
        let specs = parse(GOOD).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].labels["tier"], "2");
        assert_eq!(specs[0].slos[0].objective, Some(99.9));
        assert!(specs[0].slos[0].alerting.ticket_alert.disable);
    }

    #[test]
    fn documents_are_split_and_empty_ones_skipped() {
        let text = format!(
            "---\n{GOOD}\n---\n{}\n---\n",
            GOOD.replace("service: \"svc\"", "service: \"svc2\"")
        );
        let specs = parse(&text).unwrap();
        assert_eq!(
            specs.iter().map(|s| s.service.as_str()).collect::<Vec<_>>(),
            ["svc", "svc2"]
        );
    }

    #[test]
    fn the_same_slo_twice_in_a_file_is_refused() {
        let err = error_of(&format!("{GOOD}\n---\n{GOOD}"));
        assert!(
            err.contains("document 2")
                && err.contains("slos[0].name")
                && err.contains("svc-availability"),
            "{err}"
        );
    }

    #[test]
    fn wrong_version_is_named() {
        let err = error_of(&GOOD.replace("prometheus/v1", "sloth/v1"));
        assert!(err.contains("version") && err.contains("sloth/v1"), "{err}");
    }

    #[test]
    fn objective_out_of_range_is_named() {
        for bad in ["0", "-1", "100.5"] {
            let err = error_of(&GOOD.replace("objective: 99.9", &format!("objective: {bad}")));
            assert!(
                err.contains("slos[0].objective") && err.contains("> 0 and <= 100"),
                "{err}"
            );
        }
        assert!(parse(&GOOD.replace("objective: 99.9", "objective: 100")).is_ok());
        let err = error_of(&GOOD.replace("    objective: 99.9\n", ""));
        assert!(err.contains("slos[0].objective: is required"), "{err}");
    }

    #[test]
    fn missing_window_placeholder_is_named() {
        let err = error_of(&GOOD.replace("[{{ .window }}]", "[5m]"));
        assert!(
            err.contains("slos[0].sli.events.total_query") && err.contains("{{.window}}"),
            "{err}"
        );
    }

    #[test]
    fn other_template_actions_are_refused() {
        let err =
            error_of(&GOOD.replace("x[{{ .window }}]", "x[{{ .window }}] offset {{.offset}}"));
        assert!(
            err.contains("total_query") && err.contains("{{.offset}}"),
            "{err}"
        );
    }

    #[test]
    fn unbalanced_queries_are_refused() {
        let err =
            error_of(&GOOD.replace("sum(rate(x[{{ .window }}]))", "sum(rate(x[{{ .window }}])"));
        assert!(
            err.contains("total_query") && err.contains("unclosed"),
            "{err}"
        );
        let err = error_of(&GOOD.replace(r#"code=~"5..""#, r#"code=~"5..}"#));
        assert!(
            err.contains("error_query") && err.contains("unterminated"),
            "{err}"
        );
    }

    #[test]
    fn sli_type_must_be_exactly_one() {
        let none = GOOD.replace("      events:\n        error_query: sum(rate(x{code=~\"5..\"}[{{.window}}]))\n        total_query: sum(rate(x[{{ .window }}]))\n", "      {}\n");
        assert!(error_of(&none).contains("slos[0].sli: an SLI is required"));
        let both = GOOD.replace(
            "      events:",
            "      raw:\n        error_ratio_query: x[{{.window}}]\n      events:",
        );
        assert!(error_of(&both).contains("only one SLI type"));
    }

    #[test]
    fn identical_event_queries_are_refused() {
        let err = error_of(&GOOD.replace(r#"x{code=~"5.."}[{{.window}}]"#, "x[{{ .window }}]"));
        assert!(
            err.contains("slos[0].sli.events") && err.contains("same query"),
            "{err}"
        );
    }

    #[test]
    fn enabled_alerts_need_a_name() {
        let err = error_of(&GOOD.replace("      name: Burn\n", ""));
        assert!(err.contains("slos[0].alerting.name"), "{err}");
        let both_off = GOOD.replace("      name: Burn\n", "").replace(
            "      page_alert:\n        labels:\n          severity: page\n",
            "      page_alert:\n        disable: true\n",
        );
        assert!(parse(&both_off).is_ok());
    }

    #[test]
    fn bad_names_and_labels_are_named() {
        let err = error_of(&GOOD.replace("service: \"svc\"", "service: \"svc!\""));
        assert!(
            err.contains("service") && err.contains("not a name"),
            "{err}"
        );
        let err = error_of(&GOOD.replace("name: \"availability\"", "name: \"-x\""));
        assert!(err.contains("slos[0].name"), "{err}");
        let err = error_of(&GOOD.replace("  tier: 2", "  my-tier: 2"));
        assert!(
            err.contains("labels.my-tier") && err.contains("label name"),
            "{err}"
        );
        let err = error_of(&GOOD.replace("  tier: 2", "  __name__: x"));
        assert!(err.contains("labels.__name__"), "{err}");
        let err = error_of(&GOOD.replace("severity: page", "severity: \"\""));
        assert!(
            err.contains("slos[0].alerting.page_alert.labels.severity") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let err = error_of(&GOOD.replace(
            "    objective: 99.9",
            "    objective: 99.9\n    objetive: 99",
        ));
        assert!(
            err.contains("document 1") && err.contains("slos[0]") && err.contains("objetive"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_sloth_features_say_so() {
        let err = error_of(&GOOD.replace(
            "      events:",
            "      plugin:\n        id: x\n      events:",
        ));
        assert!(
            err.contains("slos[0].sli") && err.contains("SLI plugins are not supported"),
            "{err}"
        );
        let err = error_of(&GOOD.replace(
            "    objective: 99.9",
            "    objective: 99.9\n    infoLabels:\n      a: b",
        ));
        assert!(err.contains("infoLabels` is not supported"), "{err}");
    }

    #[test]
    fn an_empty_file_is_refused() {
        assert!(matches!(parse("# nothing\n"), Err(SpecError::Empty)));
        assert!(error_of("version: \"prometheus/v1\"\nservice: svc\n")
            .contains("slos: at least one SLO"));
    }
}
