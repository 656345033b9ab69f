"""Routing and inhibition of prometheus/alertmanager.yml through a real Alertmanager.

Starts Debian's prometheus-alertmanager and the stack's webhook sink (.ci/webhook_sink.py) on
free loopback ports, posts alerts shaped like our rules' (SLO page/ticket pairs, HTTP, collector,
node, the detector's AnomalyDetected) to /api/v2/alerts and checks which receiver path each
one reached. The config under test is the shipped file with only the webhook URLs pointed at the
sink and the group timers shortened to 1 s (the route tree, matchers, grouping and inhibit
rules are unchanged).

Run: `make test-prometheus` (or `.venv/bin/python -m pytest prometheus/tests`).
"""
import json
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".ci"))
import obs_support as obs  # noqa: E402

CONFIG = obs.ROOT / "prometheus" / "alertmanager.yml"
SHIPPED_SINK = "http://127.0.0.1:9095"
FAST_TIMERS = {"group_wait": "1s", "group_interval": "1s"}

pytestmark = pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None,
                                reason="prometheus-alertmanager not installed (make deps)")


def render_config(sink_url):
    """The shipped config with the sink's URL and 1 s group timers (every route level)."""
    text = CONFIG.read_text()
    assert SHIPPED_SINK in text, "alertmanager.yml no longer points at the local sink"
    cfg = yaml.safe_load(text.replace(SHIPPED_SINK, sink_url))
    routes = [cfg["route"]]
    while routes:
        r = routes.pop()
        for k, v in FAST_TIMERS.items():
            if k in r or r is cfg["route"]:
                r[k] = v
        routes.extend(r.get("routes", []))
    return cfg


def alert(alertname, severity, ends_in=timedelta(hours=1), **labels):
    """A postableAlert that starts now (or is resolved, with a negative `ends_in`).

    It starts now, not in the past: an alert older than group_wait is flushed at once, before
    the inhibitor has seen the page alert posted in the same request."""
    now = datetime.now(timezone.utc)
    return {
        "labels": {"alertname": alertname, "severity": severity, **labels},
        "annotations": {"summary": f"{alertname} test", "runbook_url": "docs/runbooks.md"},
        "startsAt": (now if ends_in > timedelta(0) else now - timedelta(minutes=5)).isoformat(),
        "endsAt": (now + ends_in).isoformat(),
    }


def slo(alertname, severity, service, slo_name, **kw):
    """An alert labelled like Sloth's generated burn-rate alerts."""
    return alert(alertname, severity, sloth_severity=severity, sloth_service=service,
                 sloth_slo=slo_name, sloth_id=f"{service}-{slo_name}", **kw)


class Sink:
    """Reads the deliveries the webhook sink appended to its JSON-lines log."""

    def __init__(self, log):
        self.log = log

    def deliveries(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def received(self, path, status="firing"):
        """(alertname, sloth_id or instance) of every alert delivered to `path` with `status`."""
        out = set()
        for d in self.deliveries():
            if d["path"] != path:
                continue
            for a in d["payload"]["alerts"]:
                if a["status"] == status:
                    l = a["labels"]
                    out.add((l["alertname"], l.get("sloth_id") or l.get("instance") or l.get("service", "")))
        return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alertmanager")
    sink_port, am_port = obs.free_port(), obs.free_port()
    sink_log = tmp / "webhook.jsonl"
    cfg_path = tmp / "alertmanager.yml"
    cfg_path.write_text(yaml.safe_dump(render_config(f"http://127.0.0.1:{sink_port}")))
    with obs.server("webhook-sink", [sys.executable, str(obs.ROOT / ".ci" / "webhook_sink.py"),
                                     "--listen", f"127.0.0.1:{sink_port}", "--log", str(sink_log)],
                    tmp) as sink, \
         obs.server("alertmanager", ["prometheus-alertmanager", f"--config.file={cfg_path}",
                                     f"--storage.path={tmp / 'data'}",
                                     f"--web.listen-address=127.0.0.1:{am_port}",
                                     "--cluster.listen-address="], tmp) as am:
        sink.wait_http(f"http://127.0.0.1:{sink_port}/")
        am.wait_http(f"http://127.0.0.1:{am_port}/-/ready")
        yield f"http://127.0.0.1:{am_port}", Sink(sink_log), am


def post(am_url, alerts):
    status, body = obs.http_json("POST", am_url + "/api/v2/alerts", alerts)
    assert status == 200, body


def test_routing_grouping_and_inhibition(stack):
    am_url, sink, am = stack
    post(am_url, [
        # frontend availability burns fast: page; its ticket alert must be inhibited.
        slo("SLOAvailabilityBudgetBurn", "page", "demo-frontend", "requests-availability"),
        slo("SLOAvailabilityBudgetBurn", "ticket", "demo-frontend", "requests-availability"),
        # payment latency burns slowly: ticket, not inhibited by frontend's page (other SLO).
        slo("SLOLatencyBudgetBurn", "ticket", "demo-payment", "requests-latency"),
        # Non-SLO ticket: no sloth_id, so no SLO page may inhibit it.
        alert("HTTPErrorRatioHigh", "ticket", service="demo-frontend", job="demo/demo-frontend"),
        # Two collector targets down: one page notification for the group.
        alert("CollectorDown", "page", service="otel-collector", job="otel-collector", instance="c1:8888"),
        alert("CollectorDown", "page", service="otel-collector", job="otel-collector-exporter", instance="c1:8889"),
        # CPU: the 10 s demo variant is inhibited by the 5 min alert on the same instance only.
        alert("NodeCPUHigh", "ticket", job="node-agent", instance="host-a"),
        alert("NodeCPUHigh10s", "ticket", variant="short-demo", job="node-agent", instance="host-a"),
        alert("NodeCPUHigh10s", "ticket", variant="short-demo", job="node-agent", instance="host-b"),
        # The detector's own severities go to the default receiver.
        alert("AnomalyDetected", "warning", detection="latency_p95", job="demo/demo-payment"),
    ])
    expected = {
        "/alerts/page": {("SLOAvailabilityBudgetBurn", "demo-frontend-requests-availability"),
                         ("CollectorDown", "c1:8888"), ("CollectorDown", "c1:8889")},
        "/alerts/ticket": {("SLOLatencyBudgetBurn", "demo-payment-requests-latency"),
                           ("HTTPErrorRatioHigh", "demo-frontend"),
                           ("NodeCPUHigh", "host-a"), ("NodeCPUHigh10s", "host-b")},
        "/alerts/default": {("AnomalyDetected", "")},
    }
    got = obs.wait_until(lambda: all(sink.received(p) >= want for p, want in expected.items())
                         and {p: sink.received(p) for p in expected}, timeout=30)
    assert got, f"not every alert was delivered: {[ (p, sink.received(p)) for p in expected ]}\n{am.tail()}"

    # Alertmanager itself reports the inhibited alerts as suppressed by an inhibitor.
    status, alerts = obs.http_json("GET", am_url + "/api/v2/alerts?inhibited=true")
    assert status == 200
    suppressed = {(a["labels"]["alertname"], a["labels"].get("sloth_id") or a["labels"].get("instance"))
                  for a in alerts if a["status"]["inhibitedBy"]}
    assert suppressed == {("SLOAvailabilityBudgetBurn", "demo-frontend-requests-availability"),
                          ("NodeCPUHigh10s", "host-a")}
    assert {a["labels"]["severity"] for a in alerts if a["status"]["inhibitedBy"]} == {"ticket"}

    # Several group intervals later, nothing else arrived: the inhibited alerts stayed quiet
    # and nothing went to a wrong receiver.
    time.sleep(3)
    for path, want in expected.items():
        assert sink.received(path) == want, path
    assert {d["path"] for d in sink.deliveries()} == set(expected)

    # Grouping: both collector targets came in one notification grouped by alertname/service.
    groups = [d["payload"] for d in sink.deliveries()
              if d["path"] == "/alerts/page" and d["payload"]["groupLabels"].get("alertname") == "CollectorDown"]
    assert groups and len(groups[0]["alerts"]) == 2
    assert groups[0]["groupLabels"] == {"alertname": "CollectorDown", "service": "otel-collector"}

    # The page resolves (send_resolved): its resolution reaches the page receiver, and the
    # ticket of the same SLO, no longer inhibited, is delivered.
    post(am_url, [slo("SLOAvailabilityBudgetBurn", "page", "demo-frontend", "requests-availability",
                      ends_in=timedelta(seconds=-1))])
    key = ("SLOAvailabilityBudgetBurn", "demo-frontend-requests-availability")
    assert obs.wait_until(lambda: key in sink.received("/alerts/page", "resolved"), timeout=30), am.tail()
    assert obs.wait_until(lambda: key in sink.received("/alerts/ticket"), timeout=30), am.tail()
