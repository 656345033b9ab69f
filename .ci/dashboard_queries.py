#!/usr/bin/env python3
"""Prints every query of the Grafana dashboards (and, with --rules, of the Prometheus rules).

    .ci/dashboard_queries.py                      # Prometheus expressions, ready to run
    .ci/dashboard_queries.py --raw                # as written, with $variables
    .ci/dashboard_queries.py --datasource tempo   # TraceQL queries instead
    .ci/dashboard_queries.py --json               # one JSON object per line, with where it comes from
    .ci/dashboard_queries.py --rules prometheus/rules/*.yml   # rule expressions as well

Sources: panel targets (rows included), query variables (`label_values(SELECTOR, label)` gives
SELECTOR, `query_result(EXPR)` gives EXPR) and annotation queries. Substitution: Grafana's
$__rate_interval (1m: four 15 s scrapes), $__interval (15s), $__range (1h) and friends; a custom
variable takes its first value, a query variable its `allValue` (or `.+`). The tests of the
dashboards import this module (grafana/tests/test_dashboards.py); so does the live check of
issue #16. Needs PyYAML only with --rules.
"""
import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))

# Grafana's global variables and the values used for them.
BUILTINS = {
    "__rate_interval": "1m", "__interval": "15s", "__interval_ms": "15000", "__range": "1h",
    "__range_s": "3600", "__range_ms": "3600000", "__auto": "15s",
}
# Global variables that are no PromQL but may appear in texts and links.
OTHER_GLOBALS = {"__from", "__to", "__dashboard", "__user", "__org", "__name", "__timeFilter",
                 "__all", "__data", "__field", "__series", "__value", "__url", "__url_time_range"}
VAR_RE = re.compile(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]")
LABEL_VALUES_RE = re.compile(r"^\s*label_values\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$", re.S)
QUERY_RESULT_RE = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


def variable_names(text):
    """Names of the variables referenced in `text` ($x, ${x}, ${x:fmt}, [[x]])."""
    return {a or b or c for a, b, c in VAR_RE.findall(text)}


def variable_values(dashboard):
    """{name: substitution value} for the dashboard's own variables."""
    values = {}
    for v in dashboard.get("templating", {}).get("list", []):
        kind = v.get("type")
        if kind == "custom":
            opts = [o["value"] for o in v.get("options", []) if o.get("value") not in ("$__all", None)]
            values[v["name"]] = opts[0] if opts else str(v.get("query", "")).split(",")[0].split(" : ")[-1].strip()
        elif kind in ("constant", "textbox"):
            values[v["name"]] = str(v.get("query", ""))
        elif kind == "interval":
            values[v["name"]] = str(v.get("query", "1m")).split(",")[0].strip()
        else:
            values[v["name"]] = v.get("allValue") or ".+"
    return values


def substitute(text, values):
    """`text` with Grafana's built-ins and the dashboard's variables replaced."""
    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in values:
            return values[name]
        return m.group(0)
    return VAR_RE.sub(repl, text)


def _panels(items):
    for p in items:
        yield p
        yield from _panels(p.get("panels", []))


def _ds(ref, default=None):
    if isinstance(ref, dict):
        return ref.get("type"), ref.get("uid")
    return default or (None, None)


def iter_queries(dashboard):
    """Every query of a dashboard: dicts with uid, where, datasource_type, datasource_uid, query."""
    uid = dashboard.get("uid")
    for p in _panels(dashboard.get("panels", [])):
        panel_ds = _ds(p.get("datasource"))
        for t in p.get("targets", []):
            ds_type, ds_uid = _ds(t.get("datasource"), panel_ds)
            for key in ("expr", "query", "serviceMapQuery"):
                if isinstance(t.get(key), str) and t[key].strip():
                    yield {"uid": uid, "where": f"panel {p.get('id')} {p.get('title', '')!r} {t.get('refId', '')}",
                           "datasource_type": ds_type, "datasource_uid": ds_uid,
                           "field": key, "query": t[key]}
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query" or not isinstance(v.get("query"), str):
            continue
        ds_type, ds_uid = _ds(v.get("datasource"))
        q = v["query"]
        m = LABEL_VALUES_RE.match(q)
        r = QUERY_RESULT_RE.match(q)
        expr = m.group(1) if m else (r.group(1) if r else None)
        if expr:
            yield {"uid": uid, "where": f"variable {v['name']}", "datasource_type": ds_type,
                   "datasource_uid": ds_uid, "field": "query", "query": expr}
    for a in dashboard.get("annotations", {}).get("list", []):
        if isinstance(a.get("expr"), str) and a["expr"].strip():
            ds_type, ds_uid = _ds(a.get("datasource"))
            yield {"uid": uid, "where": f"annotation {a.get('name')!r}", "datasource_type": ds_type,
                   "datasource_uid": ds_uid, "field": "expr", "query": a["expr"]}


def dashboard_queries(paths=None, datasource="prometheus", raw=False):
    """Queries of the dashboards in `paths` for `datasource` (type), substituted unless `raw`."""
    out = []
    for path in paths or DEFAULT_DASHBOARDS:
        d = json.loads(Path(path).read_text())
        values = variable_values(d)
        for q in iter_queries(d):
            if datasource and q["datasource_type"] != datasource:
                continue
            q = dict(q, file=str(path), raw=q["query"])
            if not raw:
                q["query"] = substitute(q["query"], values)
            out.append(q)
    return out


def rule_queries(paths):
    """Expressions of the recording and alert rules in `paths`."""
    import yaml
    out = []
    for path in paths:
        doc = yaml.safe_load(Path(path).read_text()) or {}
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                out.append({"file": str(path), "where": f"{g['name']} {r.get('record') or r.get('alert')}",
                            "datasource_type": "prometheus", "query": r["expr"].strip()})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dashboards", nargs="*", help="dashboard JSON files (default grafana/dashboards/*.json)")
    ap.add_argument("--datasource", default="prometheus", help="datasource type to print (default prometheus)")
    ap.add_argument("--raw", action="store_true", help="do not substitute variables")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    ap.add_argument("--rules", nargs="*", default=[], help="also print these rule files' expressions")
    a = ap.parse_args(argv)
    queries = dashboard_queries(a.dashboards or None, a.datasource, a.raw) + rule_queries(a.rules)
    for q in queries:
        print(json.dumps(q) if a.json else " ".join(q["query"].split()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
