"""Static checks of prometheus/rules/*.yml beyond promtool's (which `make test-prometheus` runs):
every alert rule carries summary, description, runbook_url and a severity the Alertmanager
routes on (page or ticket), every runbook link resolves to a section of docs/runbooks.md, and
the anomaly detector's alert is not duplicated by a Prometheus rule.

Run: `make test-prometheus` (or `.venv/bin/python -m pytest prometheus/tests`).
"""
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".ci"))
import obs_support as obs  # noqa: E402

RULE_FILES = sorted((obs.ROOT / "prometheus" / "rules").glob("*.yml"))
RUNBOOKS = obs.ROOT / "docs" / "runbooks.md"
SEVERITIES = {"page", "ticket"}


def alert_rules():
    out = []
    for path in RULE_FILES:
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            out += [(path.name, r) for r in group["rules"] if "alert" in r]
    return out


def anchors(markdown):
    """GitHub-style anchors of the markdown headings."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def test_rule_files_exist():
    names = {p.name for p in RULE_FILES}
    assert {"http.yml", "collector.yml", "node.yml", "targets.yml"} <= names, names


@pytest.mark.parametrize("source,rule", alert_rules(), ids=lambda x: x if isinstance(x, str) else x["alert"])
def test_alert_has_annotations_and_severity(source, rule):
    ann = rule.get("annotations", {})
    for key in ("summary", "description", "runbook_url"):
        assert ann.get(key, "").strip(), f"{source}: {rule['alert']} has no {key}"
    assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{source}: {rule['alert']}"


def test_runbook_links_resolve():
    known = anchors(RUNBOOKS.read_text())
    missing = []
    for source, rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        if path == "docs/runbooks.md" and anchor not in known:
            missing.append(f"{source}: {rule['alert']} -> {url}")
        elif path != "docs/runbooks.md" and not (obs.ROOT / path).exists() and not url.startswith("http"):
            missing.append(f"{source}: {rule['alert']} -> {url}")
    assert not missing, missing


def test_anomaly_alerts_are_the_detectors_own():
    # The detector sends AnomalyDetected to Alertmanager itself; a rule must not duplicate it.
    assert all(r["alert"] != "AnomalyDetected" for _, r in alert_rules())
    assert not any("anomaly_firing" in r["expr"] for _, r in alert_rules())


def test_alert_names_unique_per_severity():
    seen = {}
    for source, rule in alert_rules():
        key = (rule["alert"], rule["labels"]["severity"], rule["labels"].get("sloth_severity"))
        seen.setdefault(key, []).append(source)
    # Sloth emits one page and one ticket rule per SLO under one name; others are unique.
    dupes = {k: v for k, v in seen.items() if len(v) > 1 and not k[0].startswith("SLO")}
    assert not dupes, dupes
