"""Checks of grafana/dashboards/*.json and grafana/provisioning/.

Grafana cannot run on this machine (no Grafana package, no container runtime), so the files are
checked without it: JSON, unique and expected uids, Grafana's dashboard JSON Schema
(../shared/conformance/grafana, PyPI jsonschema), datasource references against the provisioned
datasources, variables defined and used, the anomaly detector's dashboard link, the provisioning
files' cross-references. Every Prometheus expression (after substituting Grafana's variables, see
.ci/dashboard_queries.py) goes to a real Prometheus (Debian package, free loopback port) loaded
with the shipped rules, scraping a target without traffic: each must be accepted, and the SLO
dashboard must show no NaN.

Run: `make test-grafana` (or `.venv/bin/python -m pytest grafana/tests`).
"""
import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".ci"))
import dashboard_queries as dq  # noqa: E402
import obs_support as obs  # noqa: E402

GRAFANA = obs.ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROVISIONING = GRAFANA / "provisioning"
EXPECTED_UIDS = {"slo", "service-performance", "tracing", "node", "anomaly-detector", "collector"}
SCHEMA_CHECK = obs.SHARED / "conformance" / "grafana" / "validate_dashboard.py"
RULES = sorted((obs.ROOT / "prometheus" / "rules").glob("*.yml"))
# The builtin "Annotations & Alerts" query uses Grafana's own datasource.
GRAFANA_BUILTIN_DS = {"type": "grafana", "uid": "-- Grafana --"}


def load(path):
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def dashboards():
    return {p.name: load(p) for p in DASHBOARDS}


@pytest.fixture(scope="module")
def datasources():
    doc = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yaml").read_text())
    return {d["uid"]: d for d in doc["datasources"]}


def walk(node, path=""):
    """(path, dict) for every dict inside `node`."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}/{i}")


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


# --------------------------------------------------------------------------------------------
# Static checks


def test_uids_unique_expected_and_file_names(dashboards):
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids)), uids
    assert set(uids) == EXPECTED_UIDS
    for name, d in dashboards.items():
        assert name == f"{d['uid']}.json"
        assert d["title"] and d["tags"], name


def test_checked_in_json_is_what_the_generator_writes():
    sys.path.insert(0, str(GRAFANA))
    import generate_dashboards
    rendered = generate_dashboards.render()
    assert set(rendered) == {p.name for p in DASHBOARDS}
    stale = [n for n, text in rendered.items() if (GRAFANA / "dashboards" / n).read_text() != text]
    assert not stale, f"run `python3 grafana/generate_dashboards.py`: stale {stale}"


@pytest.mark.skipif(not SCHEMA_CHECK.exists(), reason="../shared/conformance/grafana not beside the repository")
def test_dashboards_validate_against_grafana_schema():
    result = subprocess.run([sys.executable, str(SCHEMA_CHECK), *map(str, DASHBOARDS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"dashboards: {len(DASHBOARDS)}/{len(DASHBOARDS)} valid" in result.stdout


@pytest.mark.skipif(not SCHEMA_CHECK.exists(), reason="../shared/conformance/grafana not beside the repository")
def test_schema_check_rejects_a_broken_dashboard(tmp_path, dashboards):
    broken = dict(dashboards["slo.json"])
    del broken["schemaVersion"]
    broken["panels"] = [dict(broken["panels"][1], gridPos={"x": 30, "y": 0, "w": 6, "h": 4})]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run([sys.executable, str(SCHEMA_CHECK), str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "'schemaVersion' is a required property" in result.stdout
    assert "panels/0" in result.stdout  # the panel placed off the grid


def test_every_datasource_reference_resolves(dashboards, datasources):
    assert set(datasources) == {"prometheus", "tempo", "alertmanager"}
    for name, d in dashboards.items():
        refs = [(p, node["datasource"]) for p, node in walk(d) if isinstance(node.get("datasource"), dict)]
        assert refs, name
        for path, ref in refs:
            if ref == GRAFANA_BUILTIN_DS:
                continue
            assert ref.get("uid") in datasources, f"{name}{path}: unknown datasource {ref}"
            assert ref.get("type") == datasources[ref["uid"]]["type"], f"{name}{path}: {ref}"
        # Every panel with queries names its datasource (no reliance on the default).
        for p in d["panels"]:
            if p.get("targets"):
                assert isinstance(p.get("datasource"), dict), f"{name}: panel {p['title']!r}"


def test_every_variable_used_is_defined_and_every_defined_one_used(dashboards):
    for name, d in dashboards.items():
        defined = {v["name"] for v in d["templating"]["list"]}
        used = set()
        for s in strings({k: v for k, v in d.items() if k != "templating"}):
            used |= dq.variable_names(s)
        for v in d["templating"]["list"]:
            # Variables may use other variables in their queries (chained variables).
            for s in strings(v.get("query", "")):
                used |= dq.variable_names(s)
        used -= set(dq.BUILTINS) | dq.OTHER_GLOBALS
        assert used <= defined, f"{name}: undefined variables {used - defined}"
        assert defined <= used, f"{name}: unused variables {defined - used}"


def test_no_unsubstituted_variable_left(dashboards):
    for q in dq.dashboard_queries(DASHBOARDS, datasource=None):
        assert "$" not in q["query"] and "[[" not in q["query"], q


def test_panels_fit_the_grid_without_overlap(dashboards):
    for name, d in dashboards.items():
        cells = set()
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{name}: {p['title']}"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']} overlaps"
                    cells.add((x, y))


def test_detector_dashboard_url_resolves_to_the_anomaly_dashboard(dashboards):
    detector = yaml.safe_load((obs.ROOT / "anomaly-detector" / "config" / "detector.yaml").read_text())
    url = urlparse(detector["dashboard_url"])
    m = re.fullmatch(r"/d/([^/]+)(?:/[^/]*)?", url.path)
    assert m, url.path
    target = [d for d in dashboards.values() if d["uid"] == m.group(1)]
    assert target and target[0]["uid"] == "anomaly-detector"
    variables = {v["name"]: v for v in target[0]["templating"]["list"]}
    params = parse_qs(url.query)
    assert {"var-detection", "var-service"} <= set(params), params
    for key, values in params.items():
        assert key.startswith("var-") and key[4:] in variables, f"{key} is no variable of the dashboard"
    assert params["var-detection"] == ["{detection}"] and params["var-service"] == ["{service}"]
    # The detector fills {service} from the series' job (or service_name/service) label and
    # {detection} from the detection name: the variables must list those label values.
    assert re.search(r",\s*job\)$", variables["service"]["query"]), variables["service"]["query"]
    assert re.search(r",\s*detection\)$", variables["detection"]["query"])
    # The compiled-in default points at the same dashboard.
    config_rs = (obs.ROOT / "anomaly-detector" / "src" / "config.rs").read_text()
    assert "/d/anomaly-detector/" in config_rs


def test_tempo_queries_are_well_formed(dashboards):
    tempo = dq.dashboard_queries(DASHBOARDS, datasource="tempo")
    assert tempo, "the tracing dashboard searches Tempo"
    for q in tempo:
        text = q["query"]
        if q["field"] == "query":
            assert text.count("{") == text.count("}") and text.strip().startswith("{"), q


def test_provisioned_datasources_cross_references(datasources):
    for uid, d in datasources.items():
        assert d["name"] and d["type"] and d["url"].startswith("http") and d["access"] == "proxy", uid
    prom, tempo = datasources["prometheus"]["jsonData"], datasources["tempo"]["jsonData"]
    assert datasources["prometheus"]["isDefault"] is True
    assert [x["datasourceUid"] for x in prom["exemplarTraceIdDestinations"]] == ["tempo"]
    assert tempo["serviceMap"]["datasourceUid"] == "prometheus"
    assert tempo["tracesToMetrics"]["datasourceUid"] == "prometheus"
    assert datasources["alertmanager"]["jsonData"]["implementation"] == "prometheus"
    # The scrape interval Grafana assumes for $__rate_interval is Prometheus'.
    prom_cfg = yaml.safe_load((obs.ROOT / "prometheus" / "prometheus.yml").read_text())
    assert prom["timeInterval"] == prom_cfg["global"]["scrape_interval"]


def test_dashboard_provider_and_alerting_provisioning():
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yaml").read_text())["providers"]
    assert len(providers) == 1 and providers[0]["type"] == "file" and providers[0]["options"]["path"]
    alerting = yaml.safe_load((PROVISIONING / "alerting" / "alerting.yaml").read_text())
    receivers = {}
    for cp in alerting["contactPoints"]:
        for r in cp["receivers"]:
            assert r["type"] == "webhook" and r["settings"]["url"].startswith("http"), cp
            receivers[cp["name"]] = r
    pending = list(alerting["policies"])
    assert pending
    while pending:
        p = pending.pop()
        assert p["receiver"] in receivers, p
        for m in p.get("object_matchers", []):
            assert len(m) == 3 and m[1] in ("=", "!=", "=~", "!~"), m
        pending.extend(p.get("routes", []))


def test_provisioning_has_no_accidental_environment_expansion():
    # Grafana expands $VAR and ${VAR} in provisioning files; a literal $ must be written $$.
    for path in PROVISIONING.rglob("*.yaml"):
        text = re.sub(r"\$\$", "", path.read_text())
        assert "$" not in text, f"{path}: unescaped $"


# --------------------------------------------------------------------------------------------
# A real Prometheus: every expression is accepted; the SLO dashboard shows no NaN without traffic.

NO_TRAFFIC = """\
http_server_request_duration_seconds_count{job="demo/demo-frontend",http_route="/api/products",http_request_method="GET",http_response_status_code="200"} 42
http_server_request_duration_seconds_bucket{job="demo/demo-frontend",http_route="/api/products",http_request_method="GET",le="0.25"} 40
http_server_request_duration_seconds_bucket{job="demo/demo-frontend",http_route="/api/products",http_request_method="GET",le="+Inf"} 42
"""


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self):
        body = NO_TRAFFIC.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def slo_rule_file():
    """The SLO rules generated from prometheus/slos.yaml (`make slo-rules`)."""
    return obs.ROOT / "prometheus" / "rules" / "slos.yml"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (make deps)")
    tmp = tmp_path_factory.mktemp("prometheus")
    exporter = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    rules = sorted(set(RULES) | {slo_rule_file()})
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rules],
        "scrape_configs": [{"job_name": "no-traffic", "honor_labels": True, "static_configs": [
            {"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = obs.free_port()
    try:
        with obs.server("prometheus", ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
                                       f"--storage.tsdb.path={tmp / 'data'}",
                                       f"--web.listen-address=127.0.0.1:{port}"], tmp) as prom:
            url = f"http://127.0.0.1:{port}"
            prom.wait_http(url + "/-/ready")
            # The SLO metadata is recorded and the request counter has two scrapes, so rates
            # (of zero: the counter does not move) exist. The generated SLIs filter an idle
            # service out (`total > 0`), so they have no sample here.
            ready = obs.wait_until(lambda: all(
                obs.prom_query(url, q)["data"]["result"]
                for q in ("slo:objective:ratio",
                          "rate(http_server_request_duration_seconds_count[1m])")),
                timeout=30)
            assert ready, prom.tail()
            yield url
    finally:
        exporter.shutdown()
        exporter.server_close()


def values(answer):
    data = answer["data"]
    if data["resultType"] in ("scalar", "string"):
        return [data["result"][1]]
    if data["resultType"] == "vector":
        return [r["value"][1] for r in data["result"]]
    return [v[1] for r in data["result"] for v in r["values"]]


def test_every_prometheus_expression_is_accepted(prometheus):
    queries = dq.dashboard_queries(DASHBOARDS)
    # Tempo's service map query is a PromQL selector run against Prometheus too.
    queries += [q for q in dq.dashboard_queries(DASHBOARDS, datasource="tempo") if q["field"] == "serviceMapQuery"]
    assert len(queries) > 50
    failed = []
    for q in queries:
        answer = obs.prom_query(prometheus, q["query"])
        if answer.get("status") != "success":
            failed.append(f"{q['uid']} {q['where']}: {answer.get('error')}\n    {q['query']}")
    assert not failed, "\n".join(failed)


def test_prometheus_rejects_a_broken_expression(prometheus):
    # The check above can fail: a malformed expression is an error, not an empty answer.
    answer = obs.prom_query(prometheus, "sum by (job (rate(http_server_request_duration_seconds_count[1m]))")
    assert answer["status"] == "error"


def test_slo_dashboard_shows_no_nan_without_traffic(prometheus):
    # Without traffic the raw ratio is 0 requests / 0 requests = NaN; the generated SLI rules
    # record nothing instead, and the panels must still show numbers, not NaN.
    raw = values(obs.prom_query(prometheus, "rate(http_server_request_duration_seconds_count[1m])"))
    assert raw and all(float(v) == 0 for v in raw), raw
    assert not obs.prom_query(prometheus, "slo:sli_error:ratio_rate5m")["data"]["result"]
    slo = [q for q in dq.dashboard_queries(DASHBOARDS) if q["uid"] == "slo"]
    assert slo
    nan = []
    for q in slo:
        answer = obs.prom_query(prometheus, q["query"])
        assert answer["status"] == "success", (q, answer)
        if any(str(v).lower() in ("nan", "+inf", "-inf") for v in values(answer)):
            nan.append(f"{q['where']}: {q['query']}")
    assert not nan, "NaN/Inf on the SLO dashboard:\n" + "\n".join(nan)
    # Nothing spent without traffic: the budget panels show 100 %, not "no data".
    remaining = [q for q in slo if "Error budget remaining (30 days)" in q["where"]]
    assert remaining
    slos = values(obs.prom_query(prometheus, "slo:objective:ratio"))
    assert len(slos) == 6  # 3 demo services x (availability, latency) in prometheus/slos.yaml
    assert values(obs.prom_query(prometheus, remaining[0]["query"])) == ["1"] * len(slos)
