//! The repository's own SLOs: `prometheus/rules/slos.yml` must be exactly what `slo-rules
//! generate` makes of `prometheus/slos.yaml` (else: `make slo-rules`), and the generated rules keep
//! the names the Alertmanager routes, dashboards and docs rely on.
//!
//! Run: `cargo test -p slo-rules --test checked_in`.

use std::collections::BTreeSet;
use std::process::Command;

use serde_yaml::Value;
use test_support::workspace_root;

const SPEC: &str = "prometheus/slos.yaml";
const RULES: &str = "prometheus/rules/slos.yml";
const SERVICES: [&str; 3] = ["demo-frontend", "demo-inventory", "demo-payment"];

/// Runs the generator from the workspace root exactly as `make slo-rules` does, to stdout.
fn regenerate() -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_slo-rules"))
        .current_dir(workspace_root())
        .args(["generate", "--input", SPEC, "--out", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "slo-rules generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn checked_in() -> String {
    std::fs::read_to_string(workspace_root().join(RULES)).unwrap()
}

fn rules(text: &str) -> Vec<Value> {
    let doc: Value = serde_yaml::from_str(text).unwrap();
    doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .collect()
}

fn label<'a>(rule: &'a Value, name: &str) -> &'a str {
    rule["labels"][name].as_str().unwrap_or_default()
}

#[test]
fn checked_in_rules_are_fresh() {
    let fresh = regenerate();
    let current = checked_in();
    if fresh != current {
        let first = fresh
            .lines()
            .zip(current.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| fresh.lines().count().min(current.lines().count()));
        panic!(
            "{RULES} is stale (first difference at line {}): run `make slo-rules` and commit it",
            first + 1
        );
    }
}

#[test]
fn every_demo_service_has_both_slos_with_page_and_ticket_alerts() {
    let rules = rules(&checked_in());
    let mut alerts = BTreeSet::new();
    for rule in rules.iter().filter(|r| r["alert"].is_string()) {
        let service = label(rule, "service");
        let severity = label(rule, "severity");
        assert_eq!(severity, label(rule, "sloth_severity"), "{rule:?}");
        let annotations = &rule["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                annotations[key].is_string(),
                "alert without {key}: {rule:?}"
            );
        }
        let slo = slo_of_expr(rule);
        let expr = rule["expr"].as_str().unwrap();
        assert!(
            expr.contains(&format!("sloth_service=\"{service}\"")),
            "{rule:?}"
        );
        alerts.insert((
            rule["alert"].as_str().unwrap().to_owned(),
            service.to_owned(),
            slo,
            severity.to_owned(),
        ));
    }
    let mut expected = BTreeSet::new();
    for service in SERVICES {
        for severity in ["page", "ticket"] {
            expected.insert((
                "SLOAvailabilityBudgetBurn".to_owned(),
                service.to_owned(),
                "requests-availability",
                severity.to_owned(),
            ));
            expected.insert((
                "SLOLatencyBudgetBurn".to_owned(),
                service.to_owned(),
                "requests-latency",
                severity.to_owned(),
            ));
        }
    }
    assert_eq!(alerts, expected);

    let records: BTreeSet<&str> = rules.iter().filter_map(|r| r["record"].as_str()).collect();
    for record in [
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate30m",
        "slo:sli_error:ratio_rate1h",
        "slo:sli_error:ratio_rate2h",
        "slo:sli_error:ratio_rate6h",
        "slo:sli_error:ratio_rate1d",
        "slo:sli_error:ratio_rate3d",
        "slo:sli_error:ratio_rate30d",
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:time_period:days",
        "slo:current_burn_rate:ratio",
        "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "sloth_slo_info",
    ] {
        assert!(records.contains(record), "{record} is not recorded");
    }
}

#[test]
fn runbook_urls_point_at_sections_of_docs_slo_md() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/slo.md")).unwrap();
    let anchors: BTreeSet<String> = doc
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| github_anchor(l.trim_start_matches('#')))
        .collect();
    let prefix = "https://github.com/otel-pipeline/otel-pipeline/blob/main/docs/slo.md#";
    for rule in rules(&checked_in())
        .iter()
        .filter(|r| r["alert"].is_string())
    {
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("runbook_url {url} is not in docs/slo.md"))
            .replace("{{$labels.sloth_slo}}", slo_of_expr(rule));
        assert!(
            anchors.contains(&anchor),
            "docs/slo.md has no section #{anchor} ({url})"
        );
    }
}

/// The `sloth_slo` the alert's expression selects.
fn slo_of_expr(rule: &Value) -> &'static str {
    if rule["expr"]
        .as_str()
        .unwrap()
        .contains("sloth_slo=\"requests-availability\"")
    {
        "requests-availability"
    } else {
        "requests-latency"
    }
}

/// GitHub's heading anchor: lower case, spaces to `-`, punctuation other than `-` and `_` dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
