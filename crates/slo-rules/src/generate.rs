//! Turns validated specs into the Prometheus rules Sloth v0.16 generates, rule for rule.
//!
//! Per SLO, three groups (each left out when empty):
//! - `sloth-slo-sli-recordings-<id>`: `slo:sli_error:ratio_rate<w>` for every alert window
//!   (5m, 30m, 1h, 2h, 6h, 1d, 3d) and the period (30d), the period one computed from the 5m rule
//!   (`sum_over_time / count_over_time`) unless optimisation is disabled;
//! - `sloth-slo-meta-recordings-<id>`: `slo:objective:ratio`, `slo:error_budget:ratio`,
//!   `slo:time_period:days`, `slo:current_burn_rate:ratio`, `slo:period_burn_rate:ratio`,
//!   `slo:period_error_budget_remaining:ratio`, `sloth_slo_info`;
//! - `sloth-slo-alerts-<id>`: the page alert (quick pair OR slow pair) and the ticket alert.
//!
//! Label precedence is Sloth's: `sloth_*` identity labels, then the service's labels, the SLO's,
//! and the `--extra-labels` (later wins).
//!
//! Tests: `cargo test -p slo-rules generate::`; the conformance against Sloth's own outputs is
//! `tests/conformance.rs`.

use serde::Serialize;

use crate::format::{go_float, go_float_plain, PromDuration};
use crate::spec::{slo_id, Alert, Labels, Slo, Spec};
use crate::windows::{Window, Windows};

/// `sloth_mode` of rules generated from a plain spec by the CLI (Sloth's value).
pub const MODE: &str = "cli-gen-prom";

/// How to generate.
#[derive(Clone, Debug)]
pub struct Options {
    /// The alert windows of the SLO period.
    pub windows: Windows,
    /// Labels added to every SLO's rules (`--extra-labels`), overriding the spec's.
    pub extra_labels: Labels,
    /// Leave out the recording rules (SLI and metadata).
    pub disable_recordings: bool,
    /// Leave out the alert rules.
    pub disable_alerts: bool,
    /// Compute the period SLI from the raw series instead of from the 5m SLI.
    pub disable_optimized_rules: bool,
    /// The `sloth_version` label of `sloth_slo_info`.
    pub version: String,
}

/// A Prometheus rule group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleGroup {
    /// Group name.
    pub name: String,
    /// Its rules, in evaluation order.
    pub rules: Vec<Rule>,
}

/// A recording or alerting rule, serialised in Prometheus' rule file layout.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rule {
    /// Recorded series name (recording rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Alert name (alerting rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// The PromQL expression.
    pub expr: String,
    /// Labels added to the result.
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Alert annotations.
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub annotations: Labels,
}

/// Nothing would be written.
#[derive(Debug, thiserror::Error)]
#[error("0 SLO Prometheus rules generated: every alert and recording is disabled")]
pub struct NoRules;

/// The rule groups of every SLO of every spec, in spec order.
///
/// # Errors
/// [`NoRules`] when the options and the specs disable everything.
pub fn generate(specs: &[Spec], opts: &Options) -> Result<Vec<RuleGroup>, NoRules> {
    let mut groups = Vec::new();
    for spec in specs {
        for slo in &spec.slos {
            groups.extend(slo_groups(spec, slo, opts));
        }
    }
    if groups.is_empty() {
        return Err(NoRules);
    }
    Ok(groups)
}

/// What the rules of one SLO need to know, resolved once.
struct Resolved<'a> {
    id: String,
    service: &'a str,
    name: &'a str,
    /// Objective in per cent.
    objective: f64,
    /// Service labels, SLO labels and extra labels, merged.
    labels: Labels,
    slo: &'a Slo,
}

impl Resolved<'_> {
    /// `sloth_id`, `sloth_service`, `sloth_slo`.
    fn id_labels(&self) -> Labels {
        Labels::from([
            ("sloth_id".to_owned(), self.id.clone()),
            ("sloth_service".to_owned(), self.service.to_owned()),
            ("sloth_slo".to_owned(), self.name.to_owned()),
        ])
    }

    /// `{sloth_id="…", sloth_service="…", sloth_slo="…"}`.
    fn filter(&self) -> String {
        let inner: Vec<String> = self
            .id_labels()
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        format!("{{{}}}", inner.join(", "))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn merge(layers: &[&Labels]) -> Labels {
    let mut out = Labels::new();
    for layer in layers {
        out.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

fn slo_groups(spec: &Spec, slo: &Slo, opts: &Options) -> Vec<RuleGroup> {
    let r = Resolved {
        id: slo_id(spec, slo),
        service: &spec.service,
        name: &slo.name,
        objective: slo.objective.unwrap_or_default(),
        labels: merge(&[&spec.labels, &slo.labels, &opts.extra_labels]),
        slo,
    };
    let mut groups = Vec::new();
    let mut push = |prefix: &str, rules: Vec<Rule>| {
        if !rules.is_empty() {
            groups.push(RuleGroup {
                name: format!("sloth-slo-{prefix}-{}", r.id),
                rules,
            });
        }
    };
    if !opts.disable_recordings {
        push("sli-recordings", sli_rules(&r, opts));
        push("meta-recordings", meta_rules(&r, opts));
    }
    if !opts.disable_alerts {
        push("alerts", alert_rules(&r, opts));
    }
    groups
}

fn sli_metric(window: PromDuration) -> String {
    format!("slo:sli_error:ratio_rate{window}")
}

/// Replaces every `{{.window}}` (any spacing) with `window`.
fn render_window(query: &str, window: PromDuration) -> String {
    static WINDOW: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\{\{ *\.window *\}\}").expect("valid regex")
    });
    WINDOW
        .replace_all(query, window.to_string().as_str())
        .into_owned()
}

fn sli_rules(r: &Resolved<'_>, opts: &Options) -> Vec<Rule> {
    let period = opts.windows.period;
    let short = opts.windows.page_quick.short;
    let mut windows = opts.windows.alert_windows();
    windows.push(period);
    windows
        .into_iter()
        .map(|window| {
            let expr = if window == period && !opts.disable_optimized_rules {
                let metric = sli_metric(short);
                let filter = r.filter();
                format!(
                    "sum_over_time({metric}{filter}[{window}])\n/ ignoring (sloth_window)\ncount_over_time({metric}{filter}[{window}])\n"
                )
            } else if let Some(events) = &r.slo.sli.events {
                format!(
                    "({})\n/\n({})\n",
                    render_window(&events.error_query, window),
                    render_window(&events.total_query, window)
                )
            } else {
                let raw = r.slo.sli.raw.as_ref().map_or("", |raw| raw.error_ratio_query.as_str());
                format!("({})", render_window(raw, window))
            };
            let window_label = Labels::from([("sloth_window".to_owned(), window.to_string())]);
            Rule {
                record: Some(sli_metric(window)),
                alert: None,
                expr,
                labels: merge(&[&r.id_labels(), &window_label, &r.labels]),
                annotations: Labels::new(),
            }
        })
        .collect()
}

fn meta_rules(r: &Resolved<'_>, opts: &Options) -> Vec<Rule> {
    let labels = merge(&[&r.id_labels(), &r.labels]);
    let filter = r.filter();
    let ratio = go_float(r.objective / 100.0);
    let burn_rate = |window: PromDuration| {
        format!(
            "{}{filter}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{filter}\n",
            sli_metric(window)
        )
    };
    let info_extra = Labels::from([
        ("sloth_version".to_owned(), opts.version.clone()),
        ("sloth_mode".to_owned(), MODE.to_owned()),
        ("sloth_spec".to_owned(), crate::spec::VERSION.to_owned()),
        ("sloth_objective".to_owned(), go_float_plain(r.objective)),
    ]);
    let rule = |record: &str, expr: String, labels: Labels| Rule {
        record: Some(record.to_owned()),
        alert: None,
        expr,
        labels,
        annotations: Labels::new(),
    };
    vec![
        rule(
            "slo:objective:ratio",
            format!("vector({ratio})"),
            labels.clone(),
        ),
        rule(
            "slo:error_budget:ratio",
            format!("vector(1-{ratio})"),
            labels.clone(),
        ),
        rule(
            "slo:time_period:days",
            format!(
                "vector({})",
                go_float(opts.windows.period.go_hours() / 24.0)
            ),
            labels.clone(),
        ),
        rule(
            "slo:current_burn_rate:ratio",
            burn_rate(opts.windows.page_quick.short),
            labels.clone(),
        ),
        rule(
            "slo:period_burn_rate:ratio",
            burn_rate(opts.windows.period),
            labels.clone(),
        ),
        rule(
            "slo:period_error_budget_remaining:ratio",
            format!("1 - slo:period_burn_rate:ratio{filter}"),
            labels.clone(),
        ),
        rule(
            "sloth_slo_info",
            "vector(1)".to_owned(),
            merge(&[&labels, &info_extra]),
        ),
    ]
}

fn alert_rules(r: &Resolved<'_>, opts: &Options) -> Vec<Rule> {
    let w = &opts.windows;
    let alerting = &r.slo.alerting;
    let mut rules = Vec::new();
    for (severity, alert, quick, slow) in [
        ("page", &alerting.page_alert, &w.page_quick, &w.page_slow),
        (
            "ticket",
            &alerting.ticket_alert,
            &w.ticket_quick,
            &w.ticket_slow,
        ),
    ] {
        if alert.disable {
            continue;
        }
        rules.push(alert_rule(r, opts, severity, alert, [quick, slow]));
    }
    rules
}

fn alert_rule(
    r: &Resolved<'_>,
    opts: &Options,
    severity: &str,
    alert: &Alert,
    pairs: [&Window; 2],
) -> Rule {
    let alerting = &r.slo.alerting;
    let filter = r.filter();
    let budget = go_float((100.0 - r.objective) / 100.0);
    let term = |window: PromDuration, factor: &str| {
        format!(
            "max({}{filter} > ({factor} * {budget})) without (sloth_window)",
            sli_metric(window)
        )
    };
    let pair = |w: &Window| {
        let factor = go_float(opts.windows.burn_rate_factor(w));
        format!(
            "(\n    {}\n    and\n    {}\n)",
            term(w.short, &factor),
            term(w.long, &factor)
        )
    };
    let expr = format!("{}\nor\n{}\n", pair(pairs[0]), pair(pairs[1]));
    let defaults = Labels::from([
        (
            "title".to_owned(),
            format!("({severity}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}} SLO error budget burn rate is too fast."),
        ),
        (
            "summary".to_owned(),
            "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over expected.".to_owned(),
        ),
    ]);
    let severity_label = Labels::from([("sloth_severity".to_owned(), severity.to_owned())]);
    Rule {
        record: None,
        alert: Some(alerting.name.clone()),
        expr,
        labels: merge(&[&severity_label, &alerting.labels, &alert.labels]),
        annotations: merge(&[&defaults, &alerting.annotations, &alert.annotations]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            windows: Windows::builtin(PromDuration::days(30)).unwrap(),
            extra_labels: Labels::new(),
            disable_recordings: false,
            disable_alerts: false,
            disable_optimized_rules: false,
            version: "test".into(),
        }
    }

    fn specs(extra: &str) -> Vec<Spec> {
        crate::spec::parse(&format!(
            r#"
version: "prometheus/v1"
service: "svc"
labels: {{team: a, shared: service}}
slos:
  - name: "avail"
    objective: 99.5
    labels: {{shared: slo}}
    sli:
      events:
        error_query: sum(rate(x{{code=~"5.."}}[{{{{.window}}}}]))
        total_query: sum(rate(x[{{{{.window}}}}]))
    alerting:
      name: Burn
      labels: {{severity: any, owner: a}}
      annotations: {{summary: mine}}
      page_alert: {{labels: {{severity: page}}}}
{extra}
"#
        ))
        .unwrap()
    }

    fn find<'a>(groups: &'a [RuleGroup], record: &str) -> &'a Rule {
        groups
            .iter()
            .flat_map(|g| &g.rules)
            .find(|r| r.record.as_deref() == Some(record))
            .unwrap()
    }

    #[test]
    fn one_slo_gives_three_groups_of_sloth_rules() {
        let groups = generate(&specs(""), &opts()).unwrap();
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "sloth-slo-sli-recordings-svc-avail",
                "sloth-slo-meta-recordings-svc-avail",
                "sloth-slo-alerts-svc-avail"
            ]
        );
        let windows: Vec<&str> = groups[0]
            .rules
            .iter()
            .map(|r| r.labels["sloth_window"].as_str())
            .collect();
        assert_eq!(windows, ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]);
        assert_eq!(groups[1].rules.len(), 7);
        assert_eq!(groups[2].rules.len(), 2);
    }

    #[test]
    fn the_sli_substitutes_the_window_and_the_period_uses_the_5m_rule() {
        let groups = generate(&specs(""), &opts()).unwrap();
        assert_eq!(
            find(&groups, "slo:sli_error:ratio_rate1h").expr,
            "(sum(rate(x{code=~\"5..\"}[1h])))\n/\n(sum(rate(x[1h])))\n"
        );
        let period = &find(&groups, "slo:sli_error:ratio_rate30d").expr;
        assert!(period.starts_with("sum_over_time(slo:sli_error:ratio_rate5m{sloth_id=\"svc-avail\", sloth_service=\"svc\", sloth_slo=\"avail\"}[30d])"), "{period}");
        let mut o = opts();
        o.disable_optimized_rules = true;
        let groups = generate(&specs(""), &o).unwrap();
        assert!(find(&groups, "slo:sli_error:ratio_rate30d")
            .expr
            .contains("rate(x[30d])"));
    }

    #[test]
    fn labels_merge_service_then_slo_then_extra() {
        let mut o = opts();
        o.extra_labels = Labels::from([("team".to_owned(), "extra".to_owned())]);
        let groups = generate(&specs(""), &o).unwrap();
        let rule = find(&groups, "slo:sli_error:ratio_rate5m");
        assert_eq!(rule.labels["shared"], "slo");
        assert_eq!(rule.labels["team"], "extra");
        assert_eq!(rule.labels["sloth_id"], "svc-avail");
        let alert = &groups[2].rules[0];
        assert!(
            !alert.labels.contains_key("team"),
            "alerts inherit the series' labels instead"
        );
    }

    #[test]
    fn metadata_uses_go_float_formatting() {
        let groups = generate(&specs(""), &opts()).unwrap();
        assert_eq!(find(&groups, "slo:objective:ratio").expr, "vector(0.995)");
        assert_eq!(
            find(&groups, "slo:error_budget:ratio").expr,
            "vector(1-0.995)"
        );
        assert_eq!(find(&groups, "slo:time_period:days").expr, "vector(30)");
        let info = find(&groups, "sloth_slo_info");
        assert_eq!(info.labels["sloth_objective"], "99.5");
        assert_eq!(info.labels["sloth_mode"], "cli-gen-prom");
        assert_eq!(info.labels["sloth_version"], "test");
    }

    #[test]
    fn page_and_ticket_alerts_carry_their_pairs_and_labels() {
        let groups = generate(&specs(""), &opts()).unwrap();
        let page = &groups[2].rules[0];
        assert_eq!(page.alert.as_deref(), Some("Burn"));
        assert_eq!(page.labels["severity"], "page");
        assert_eq!(page.labels["sloth_severity"], "page");
        assert_eq!(page.labels["owner"], "a");
        assert!(page.expr.contains("ratio_rate5m{sloth_id=\"svc-avail\", sloth_service=\"svc\", sloth_slo=\"avail\"} > (14.4 * 0.005)"));
        assert!(page.expr.contains("ratio_rate6h{") && page.expr.contains("(6 * 0.005)"));
        assert_eq!(page.annotations["summary"], "mine");
        assert!(page.annotations["title"].starts_with("(page) "));
        let ticket = &groups[2].rules[1];
        assert_eq!(ticket.labels["severity"], "any");
        assert!(ticket.expr.contains("ratio_rate3d{") && ticket.expr.contains("(1 * 0.005)"));
        assert!(ticket.expr.contains("ratio_rate2h{") && ticket.expr.contains("(3 * 0.005)"));
    }

    #[test]
    fn disabling_everything_is_an_error() {
        let mut o = opts();
        o.disable_alerts = true;
        o.disable_recordings = true;
        assert!(generate(&specs(""), &o).is_err());
        o.disable_recordings = false;
        let groups = generate(&specs(""), &o).unwrap();
        assert_eq!(groups.len(), 2);
    }

    #[test]
    fn raw_slis_are_wrapped_in_parentheses() {
        let text = r#"
version: "prometheus/v1"
service: "svc"
slos:
  - name: "raw"
    objective: 95
    sli:
      raw:
        error_ratio_query: errors:ratio_rate{{.window}} / 1
    alerting: {page_alert: {disable: true}, ticket_alert: {disable: true}}
"#;
        let groups = generate(&crate::spec::parse(text).unwrap(), &opts()).unwrap();
        assert_eq!(
            find(&groups, "slo:sli_error:ratio_rate2h").expr,
            "(errors:ratio_rate2h / 1)"
        );
        assert_eq!(
            groups.len(),
            2,
            "no alert group when both alerts are disabled"
        );
    }

    #[test]
    fn twenty_eight_days_record_a_4w_period() {
        let mut o = opts();
        o.windows = Windows::builtin(PromDuration::days(28)).unwrap();
        let groups = generate(&specs(""), &o).unwrap();
        assert!(find(&groups, "slo:sli_error:ratio_rate4w")
            .expr
            .contains("[4w]"));
        assert_eq!(find(&groups, "slo:time_period:days").expr, "vector(28)");
        assert!(groups[2].rules[0].expr.contains("(13.44 * 0.005)"));
    }
}
