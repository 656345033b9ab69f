#!/usr/bin/env python3
"""Writes grafana/dashboards/*.json, the dashboards Grafana provisions (grafana/provisioning).

The checked-in JSON is what Grafana loads; this script only keeps the six dashboards consistent
(datasource refs, layout, units, "no data" texts). Edit a dashboard here, run
`python3 grafana/generate_dashboards.py`, and commit both; grafana/tests/test_dashboards.py fails
when the JSON is stale. Standard library only.

Metric names are the ones in Prometheus (docs/prometheus-translation.md): the demo's
http_server_request_duration_seconds_* (job = service namespace/name), the node agent's system_*
and process_* (job="node-agent"), the collector's otelcol_* (job="otel-collector"), the detector's
anomaly_*, the recording rules in prometheus/rules/, Sloth's slo:* series, and the collector's
spanmetrics/servicegraph connector series (traces_span_metrics_*, traces_service_graph_*).
"""
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 41
PROM = {"type": "prometheus", "uid": "prometheus"}
TEMPO = {"type": "tempo", "uid": "tempo"}
TAG = "otel-pipeline"


# ---------------------------------------------------------------------------------------------
# Building blocks


def prom(expr, legend="", instant=False, exemplar=False, fmt=None):
    """A Prometheus query target (refId assigned by the panel)."""
    t = {"datasource": PROM, "expr": expr, "legendFormat": legend or "__auto",
         "range": not instant, "instant": instant}
    if exemplar:
        t["exemplar"] = True
    if fmt:
        t["format"] = fmt
    return t


def traceql(query, limit=20):
    """A Tempo TraceQL search target (table of traces)."""
    return {"datasource": TEMPO, "queryType": "traceql", "query": query, "limit": limit,
            "tableType": "traces"}


def field_defaults(unit=None, min_=None, max_=None, no_value=None, thresholds=None, decimals=None):
    d = {}
    if unit:
        d["unit"] = unit
    if min_ is not None:
        d["min"] = min_
    if max_ is not None:
        d["max"] = max_
    if no_value:
        d["noValue"] = no_value
    if decimals is not None:
        d["decimals"] = decimals
    if thresholds:
        d["thresholds"] = {"mode": "absolute",
                           "steps": [{"value": None, "color": thresholds[0]}]
                           + [{"value": v, "color": c} for v, c in thresholds[1:]]}
        d["color"] = {"mode": "thresholds"}
    return d


def panel(kind, title, targets, w, h, description="", options=None, overrides=None,
          datasource=PROM, **defaults):
    p = {"type": kind, "title": title, "datasource": datasource,
         "gridPos": {"w": w, "h": h},
         "fieldConfig": {"defaults": field_defaults(**defaults), "overrides": overrides or []},
         "options": options or {},
         "targets": targets}
    if description:
        p["description"] = description
    return p


def timeseries(title, targets, w=12, h=8, stack=False, **kw):
    opts = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"}}
    p = panel("timeseries", title, targets, w, h, options=opts, **kw)
    custom = {"lineWidth": 1, "fillOpacity": 10 if not stack else 40, "showPoints": "never",
              "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    p["fieldConfig"]["defaults"]["custom"] = custom
    return p


def stat(title, targets, w=6, h=4, **kw):
    opts = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    return panel("stat", title, targets, w, h, options=opts, **kw)


def bargauge(title, targets, w=12, h=8, **kw):
    opts = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    return panel("bargauge", title, targets, w, h, options=opts, **kw)


def table(title, targets, w=12, h=8, **kw):
    return panel("table", title, targets, w, h, options={"showHeader": True}, **kw)


def state_timeline(title, targets, w=12, h=6, **kw):
    opts = {"showValue": "never", "mergeValues": True, "rowHeight": 0.8,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}}
    return panel("state-timeline", title, targets, w, h, options=opts, **kw)


def heatmap(title, targets, w=12, h=8, **kw):
    opts = {"calculate": False, "yAxis": {"unit": kw.get("unit", "s")},
            "cellGap": 1, "color": {"mode": "scheme", "scheme": "Spectral", "steps": 64},
            "tooltip": {"mode": "single", "yHistogram": True}}
    return panel("heatmap", title, targets, w, h, options=opts, **kw)


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(items):
    """Assigns ids, refIds and grid positions: panels flow left to right, rows start a line."""
    x = y = line_h = 0
    out = []
    for i, p in enumerate(items, start=1):
        p = dict(p, id=i)
        if p["type"] == "row":
            y += line_h
            x, line_h = 0, 0
            p["gridPos"] = {"x": 0, "y": y, "w": 24, "h": 1}
            y += 1
        else:
            w, h = p["gridPos"]["w"], p["gridPos"]["h"]
            if x + w > 24:
                x, y, line_h = 0, y + line_h, 0
            p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
            x += w
            line_h = max(line_h, h)
            for j, t in enumerate(p.get("targets", [])):
                t["refId"] = chr(ord("A") + j)
        out.append(p)
    return out


def query_var(name, label, query, multi=True, include_all=True, all_value=".+", current=None,
              description=""):
    v = {"type": "query", "name": name, "label": label, "datasource": PROM,
         "query": query, "definition": query, "refresh": 2, "sort": 1,
         "multi": multi, "includeAll": include_all, "options": []}
    if include_all:
        v["allValue"] = all_value
    if current is None:
        current = ["$__all"] if include_all else []
    v["current"] = {"text": current, "value": current}
    if description:
        v["description"] = description
    return v


def custom_var(name, label, values, multi=True, include_all=True):
    opts = [{"text": t, "value": t, "selected": False} for t in values]
    v = {"type": "custom", "name": name, "label": label, "query": ",".join(values),
         "multi": multi, "includeAll": include_all, "options": opts,
         "current": {"text": ["$__all"] if include_all else [values[0]],
                     "value": ["$__all"] if include_all else [values[0]]}}
    if include_all:
        v["allValue"] = "|".join(values)
    return v


BUILTIN_ANNOTATION = {
    "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
    "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
    "type": "dashboard",
}


def dashboard(uid, title, description, variables, items, annotations=(), refresh="30s",
              time_from="now-6h"):
    return {
        "uid": uid, "title": title, "description": description, "tags": [TAG],
        "timezone": "browser", "editable": False, "graphTooltip": 1,
        "time": {"from": time_from, "to": "now"}, "refresh": refresh,
        "schemaVersion": SCHEMA_VERSION, "version": 1,
        "links": [{"title": "otel-pipeline dashboards", "type": "dashboards", "icon": "external link",
                   "tooltip": "", "tags": [TAG], "asDropdown": True, "targetBlank": False,
                   "includeVars": False, "keepTime": True}],
        "templating": {"list": variables},
        "annotations": {"list": [BUILTIN_ANNOTATION, *annotations]},
        "panels": layout(items),
    }


def rate(metric, selector, window="$__rate_interval"):
    return f"rate({metric}{{{selector}}}[{window}])"


# ---------------------------------------------------------------------------------------------
# SLO: Sloth's recorded series (prometheus/rules/slos.yml). Every expression drops NaN (an SLI
# with no traffic is 0/0): `>= 0` / `>= -Inf` filters, with "no traffic" texts or a fallback.

SLO_SEL = 'sloth_service=~"$service", sloth_slo=~"$slo"'


def not_nan(expr):
    return f"({expr}) >= -Inf"


def slo_dashboard():
    sli5m = f"slo:sli_error:ratio_rate5m{{{SLO_SEL}}}"
    budget = f"slo:error_budget:ratio{{{SLO_SEL}}}"
    # Budget remaining per SLO; 1 (nothing spent) when the 30-day SLI is NaN (no traffic).
    # Sloth's series carry sloth_window="30d" here, so the fallback matches on sloth_id only.
    remaining = (f"max by (sloth_id) ({not_nan(f'slo:period_error_budget_remaining:ratio{{{SLO_SEL}}}')})"
                 f" or on (sloth_id) max by (sloth_id) (slo:objective:ratio{{{SLO_SEL}}} * 0 + 1)")
    burn_windows = (f'max by (sloth_id, sloth_window) ({{__name__=~"slo:sli_error:ratio_rate.+", {SLO_SEL}}} >= 0)'
                    f" / on (sloth_id) group_left () max by (sloth_id) ({budget})")
    # Remaining budget x period / current burn rate; no sample when the budget is not burning.
    days_left = (f"clamp_min(({remaining}) * on (sloth_id) max by (sloth_id) (slo:time_period:days{{{SLO_SEL}}})"
                 f" / on (sloth_id) max by (sloth_id) (slo:current_burn_rate:ratio{{{SLO_SEL}}} > 0), 0)")
    alerts = (f'max by (alertname, sloth_id, sloth_severity) '
              f'(ALERTS{{alertname=~"SLO.+", alertstate="firing", {SLO_SEL}}})')
    items = [
        row("Now"),
        stat("SLI (last 5 min)",
             [prom(f"1 - max by (sloth_id) ({sli5m} >= 0)", "{{sloth_id}}", instant=True)],
             w=6, unit="percentunit", decimals=3, no_value="no traffic",
             description="Share of good events over the last 5 minutes. No traffic: no value."),
        stat("SLI (30 days)",
             [prom(f"1 - max by (sloth_id) (slo:sli_error:ratio_rate30d{{{SLO_SEL}}} >= 0)",
                   "{{sloth_id}}", instant=True)],
             w=6, unit="percentunit", decimals=3, no_value="no traffic"),
        stat("Objective",
             [prom(f"max by (sloth_id) (slo:objective:ratio{{{SLO_SEL}}})", "{{sloth_id}}", instant=True)],
             w=4, unit="percentunit", decimals=2, no_value="no SLO"),
        stat("Error budget remaining (30 days)",
             [prom(remaining, "{{sloth_id}}", instant=True)],
             w=8, unit="percentunit", decimals=1, no_value="no SLO",
             thresholds=["red", (0.25, "orange"), (0.5, "green")],
             description="1 - budget spent over the period; 100 % when nothing was spent or there was no traffic."),
        stat("Budget exhausted in (at the current burn rate)",
             [prom(days_left, "{{sloth_id}}", instant=True)],
             w=8, unit="d", decimals=1, no_value="not burning",
             thresholds=["red", (2, "orange"), (7, "green")],
             description="Remaining budget x period / current (5 min) burn rate, in days. "
                         "No value when the budget is not burning."),
        bargauge("Burn rate per window (now)", [prom(burn_windows, "{{sloth_id}} {{sloth_window}}", instant=True)],
                 w=8, h=8, min_=0, no_value="no traffic",
                 thresholds=["green", (1, "yellow"), (6, "orange"), (14.4, "red")],
                 description="Error rate over each window / error budget. 1 spends the budget in "
                             "exactly the period; paging at 14.4 (1 h and 5 min) and 6 (6 h and 30 min)."),
        table("SLO alerts firing", [prom(alerts, "", instant=True, fmt="table")],
              w=8, h=8, no_value="no SLO alert firing",
              description="Firing SLOAvailabilityBudgetBurn / SLOLatencyBudgetBurn alerts (page, ticket)."),
        row("Over time"),
        timeseries("SLI",
                   [prom(f"1 - max by (sloth_id) ({sli5m} >= 0)", "{{sloth_id}} 5m"),
                    prom(f"1 - max by (sloth_id) (slo:sli_error:ratio_rate1h{{{SLO_SEL}}} >= 0)", "{{sloth_id}} 1h"),
                    prom(f"max by (sloth_id) (slo:objective:ratio{{{SLO_SEL}}})", "{{sloth_id}} objective")],
                   unit="percentunit", no_value="no traffic"),
        timeseries("Burn rate per window", [prom(burn_windows, "{{sloth_id}} {{sloth_window}}")],
                   min_=0, no_value="no traffic"),
        timeseries("Error budget remaining", [prom(remaining, "{{sloth_id}}")],
                   unit="percentunit", no_value="no SLO"),
        state_timeline("SLO alert state", [prom(alerts, "{{alertname}} {{sloth_id}} {{sloth_severity}}")],
                       no_value="no SLO alert firing"),
    ]
    variables = [
        query_var("service", "Service", "label_values(slo:objective:ratio, sloth_service)"),
        query_var("slo", "SLO", 'label_values(slo:objective:ratio{sloth_service=~"$service"}, sloth_slo)'),
    ]
    return dashboard("slo", "SLOs", "SLIs, error budgets and burn rates of the SLOs in "
                     "prometheus/slos.yaml (docs/slo.md).", variables, items)


# ---------------------------------------------------------------------------------------------
# Service performance: RED per route from the demo's HTTP histogram, plus process and business.

HTTP = "http_server_request_duration_seconds"
HTTP_SEL = 'job=~"$service", http_route=~"$route"'


def service_dashboard():
    err_sel = HTTP_SEL + ', http_response_status_code=~"5.."'
    req = f"sum by (job, http_route) ({rate(HTTP + '_count', HTTP_SEL)})"
    err = f"sum by (job, http_route) ({rate(HTTP + '_count', err_sel)})"
    ratio = f"({err} or {req} * 0) / ({req} > 0)"
    total_ratio = (f"(sum({rate(HTTP + '_count', err_sel)}) or sum({rate(HTTP + '_count', HTTP_SEL)}) * 0)"
                   f" / (sum({rate(HTTP + '_count', HTTP_SEL)}) > 0)")
    svc = 'job=~"$service"'

    def quantile(q):
        return prom(f"histogram_quantile({q}, sum by (job, http_route, le) ({rate(HTTP + '_bucket', HTTP_SEL)}))",
                    "{{job}} {{http_route}} p" + str(int(q * 100)), exemplar=True)

    proc = 'job="node-agent", process_executable_name=~"$process"'
    items = [
        row("Rate, errors, duration"),
        stat("Requests/s", [prom(f"sum({rate(HTTP + '_count', HTTP_SEL)})", instant=True)],
             w=6, unit="reqps", no_value="no traffic"),
        stat("Error ratio (5xx)", [prom(total_ratio, instant=True)],
             w=6, unit="percentunit", decimals=2, no_value="no traffic",
             thresholds=["green", (0.001, "orange"), (0.01, "red")]),
        stat("p95 latency", [prom(f"histogram_quantile(0.95, sum by (le) ({rate(HTTP + '_bucket', HTTP_SEL)}))", instant=True)],
             w=6, unit="s", no_value="no traffic", thresholds=["green", (0.25, "orange"), (0.5, "red")]),
        stat("Active requests", [prom(f'sum(http_server_active_requests{{job=~"$service"}})', instant=True)],
             w=6, no_value="0"),
        timeseries("Requests/s per route", [prom(req, "{{job}} {{http_route}}")], unit="reqps"),
        timeseries("Error ratio per route (5xx)", [prom(ratio, "{{job}} {{http_route}}")],
                   unit="percentunit", min_=0, no_value="no traffic"),
        timeseries("Latency per route (p50, p95, p99; exemplars link to traces)",
                   [quantile(0.5), quantile(0.95), quantile(0.99)], w=24, unit="s"),
        heatmap("Latency distribution",
                [prom(f"sum by (le) (increase({HTTP}_bucket{{{HTTP_SEL}}}[$__rate_interval]))",
                      "{{le}}", fmt="heatmap")], unit="s"),
        timeseries("Responses by status code",
                   [prom(f"sum by (http_response_status_code) ({rate(HTTP + '_count', HTTP_SEL)})",
                         "{{http_response_status_code}}")], unit="reqps", stack=True),
        timeseries("Active requests",
                   [prom('sum by (job, http_request_method) (http_server_active_requests{job=~"$service"})',
                         "{{job}} {{http_request_method}}")]),
        row("Process (node agent)"),
        timeseries("CPU per process",
                   [prom(f"sum by (process_executable_name, process_pid) ({rate('process_cpu_time_seconds_total', proc)})",
                         "{{process_executable_name}} {{process_pid}}")], unit="percentunit",
                   description="CPU seconds per second (1 = one core)."),
        timeseries("Resident memory per process",
                   [prom(f"sum by (process_executable_name, process_pid) (process_memory_usage_bytes{{{proc}}})",
                         "{{process_executable_name}} {{process_pid}}")], unit="bytes"),
        row("Business"),
        timeseries("Orders created/s", [prom(f"sum by (order_status) ({rate('demo_orders_created_total', svc)})",
                                             "{{order_status}}")], w=8, unit="ops"),
        timeseries("Order value (p50, p95)",
                   [prom(f"histogram_quantile(0.5, sum by (le) ({rate('demo_order_value_USD_bucket', svc)}))", "p50"),
                    prom(f"histogram_quantile(0.95, sum by (le) ({rate('demo_order_value_USD_bucket', svc)}))", "p95")],
                   w=8, unit="currencyUSD"),
        timeseries("Inventory level per product",
                   [prom("sum by (product_id) (demo_inventory_level)", "product {{product_id}}")], w=8),
    ]
    variables = [
        query_var("service", "Service", f"label_values({HTTP}_count, job)"),
        query_var("route", "Route", f'label_values({HTTP}_count{{job=~"$service"}}, http_route)'),
        query_var("process", "Process", 'label_values(process_cpu_time_seconds_total{job="node-agent"}, process_executable_name)',
                  current=["demo-app"], description="Processes the node agent reports (the demo runs as demo-app)."),
    ]
    return dashboard("service-performance", "Service performance",
                     "RED per route, latency distribution, status codes, active requests, process "
                     "CPU and memory, and the demo's business metrics.", variables, items)


# ---------------------------------------------------------------------------------------------
# Tracing: Tempo search plus the collector's span metrics and service graph series.

SPAN_SEL = 'service_name=~"$service", span_name=~"$span_name"'


def tracing_dashboard():
    calls = "traces_span_metrics_calls_total"
    server_sel = SPAN_SEL + ', span_kind="SPAN_KIND_SERVER"'
    error_sel = SPAN_SEL + ', status_code="STATUS_CODE_ERROR"'
    dur = "traces_span_metrics_duration_seconds_bucket"
    graph_sel = 'server=~"$service"'
    items = [
        row("Traces (Tempo)"),
        table("Recent traces", [traceql('{resource.service.name=~"$service"}')], w=12, h=9,
              datasource=TEMPO, description="TraceQL search of the selected services."),
        table("Error traces", [traceql('{resource.service.name=~"$service" && status = error}')], w=12, h=9,
              datasource=TEMPO),
        table("Slow traces (over 500 ms)", [traceql('{resource.service.name=~"$service" && duration > 500ms}')],
              w=12, h=9, datasource=TEMPO),
        panel("nodeGraph", "Service graph", [{"datasource": TEMPO, "queryType": "serviceMap",
                                             "serviceMapQuery": '{server=~"$service"}'}],
              12, 9, datasource=TEMPO,
              description="Tempo's service map, drawn from the servicegraph connector's series in "
                          "Prometheus; edges into the selected services."),
        row("Service graph (servicegraph connector)"),
        timeseries("Requests/s per edge",
                   [prom(f"sum by (client, server) ({rate('traces_service_graph_request_total', graph_sel)})",
                         "{{client}} → {{server}}")], w=8, unit="reqps", no_value="no edges yet"),
        timeseries("Failed requests/s per edge",
                   [prom(f"sum by (client, server) ({rate('traces_service_graph_request_failed_total', graph_sel)})",
                         "{{client}} → {{server}}")], w=8, unit="reqps", no_value="no failures"),
        timeseries("Server latency p95 per edge",
                   [prom(f"histogram_quantile(0.95, sum by (client, server, le) ({rate('traces_service_graph_request_server_seconds_bucket', graph_sel)}))",
                         "{{client}} → {{server}}")], w=8, unit="s", no_value="no edges yet"),
        row("Latency by service (spanmetrics connector)"),
        timeseries("Server span latency p95 per service",
                   [prom(f"histogram_quantile(0.95, sum by (service_name, le) ({rate(dur, server_sel)}))",
                         "{{service_name}}", exemplar=True)], unit="s"),
        timeseries("Span latency p95 per operation",
                   [prom(f"histogram_quantile(0.95, sum by (service_name, span_name, le) ({rate(dur, SPAN_SEL)}))",
                         "{{service_name}} {{span_name}}")], unit="s"),
        timeseries("Spans/s per service",
                   [prom(f"sum by (service_name) ({rate(calls, SPAN_SEL)})", "{{service_name}}")], unit="ops"),
        timeseries("Error spans/s per service",
                   [prom(f"sum by (service_name) ({rate(calls, error_sel)})",
                         "{{service_name}}")], unit="ops", no_value="no errors"),
    ]
    variables = [
        query_var("service", "Service", "label_values(traces_span_metrics_calls_total, service_name)"),
        query_var("span_name", "Operation",
                  'label_values(traces_span_metrics_calls_total{service_name=~"$service"}, span_name)'),
    ]
    return dashboard("tracing", "Tracing", "Trace search (Tempo), the service graph and latency by "
                     "service from span metrics.", variables, items, time_from="now-1h")


# ---------------------------------------------------------------------------------------------
# Node: the node agent's host metrics.

N = 'job="node-agent", instance=~"$instance"'


def node_dashboard():
    def r(metric, extra=""):
        return rate(metric, N + extra)

    items = [
        row("CPU and load"),
        stat("CPU busy", [prom(f'instance:system_cpu_busy:ratio{{{N}}}', "{{instance}}", instant=True)],
             w=6, unit="percentunit", thresholds=["green", (0.75, "orange"), (0.9, "red")], no_value="no data"),
        stat("Memory available", [prom(f'instance:system_memory_available:ratio{{{N}}}', "{{instance}}", instant=True)],
             w=6, unit="percentunit", thresholds=["red", (0.1, "orange"), (0.25, "green")], no_value="no data"),
        stat("Load (1 min)", [prom(f"system_cpu_load_average_1m{{{N}}}", "{{instance}}", instant=True)], w=6),
        stat("Uptime", [prom(f"system_uptime_seconds{{{N}}}", "{{instance}}", instant=True)], w=6, unit="s"),
        timeseries("CPU busy per core",
                   [prom(f'1 - avg by (instance, cpu_logical_number) (system_cpu_utilization_ratio{{{N}, cpu_mode="idle", cpu_logical_number!=""}})',
                         "{{instance}} cpu {{cpu_logical_number}}")], unit="percentunit", min_=0, max_=1),
        timeseries("CPU by mode",
                   [prom(f'avg by (instance, cpu_mode) (system_cpu_utilization_ratio{{{N}, cpu_mode!="idle", cpu_logical_number!=""}})',
                         "{{instance}} {{cpu_mode}}")], unit="percentunit", stack=True),
        timeseries("Load average",
                   [prom(f"system_cpu_load_average_1m{{{N}}}", "{{instance}} 1m"),
                    prom(f"system_cpu_load_average_5m{{{N}}}", "{{instance}} 5m"),
                    prom(f"system_cpu_load_average_15m{{{N}}}", "{{instance}} 15m")]),
        timeseries("Processes by state",
                   [prom(f"sum by (instance, process_state) (system_processes_count{{{N}}})",
                         "{{instance}} {{process_state}}")]),
        row("Memory and paging"),
        timeseries("Memory by state",
                   [prom(f"sum by (instance, system_memory_state) (system_memory_usage_bytes{{{N}}})",
                         "{{instance}} {{system_memory_state}}")], unit="bytes", stack=True),
        timeseries("Swap",
                   [prom(f"sum by (instance, system_paging_state) (system_paging_usage_bytes{{{N}}})",
                         "{{instance}} {{system_paging_state}}")], unit="bytes", stack=True),
        timeseries("Paging operations/s",
                   [prom(f"sum by (instance, system_paging_direction, system_paging_fault_type) ({r('system_paging_operations_total')})",
                         "{{instance}} {{system_paging_direction}} {{system_paging_fault_type}}")], unit="ops"),
        timeseries("Page faults/s",
                   [prom(f"sum by (instance, system_paging_fault_type) ({r('system_paging_faults_total')})",
                         "{{instance}} {{system_paging_fault_type}}")], unit="ops"),
        row("Disk and filesystem"),
        timeseries("Disk throughput",
                   [prom(f"sum by (instance, system_device, disk_io_direction) ({r('system_disk_io_bytes_total')})",
                         "{{instance}} {{system_device}} {{disk_io_direction}}")], unit="Bps"),
        timeseries("Disk busy (I/O time per second)",
                   [prom(f"sum by (instance, system_device) ({r('system_disk_io_time_seconds_total')})",
                         "{{instance}} {{system_device}}")], unit="percentunit", min_=0),
        timeseries("Disk operations/s",
                   [prom(f"sum by (instance, system_device, disk_io_direction) ({r('system_disk_operations_total')})",
                         "{{instance}} {{system_device}} {{disk_io_direction}}")], unit="iops"),
        bargauge("Filesystem used",
                 [prom(f"max by (instance, system_filesystem_mountpoint) (system_filesystem_utilization_ratio{{{N}}})",
                       "{{instance}} {{system_filesystem_mountpoint}}", instant=True)],
                 unit="percentunit", min_=0, max_=1, thresholds=["green", (0.8, "orange"), (0.9, "red")]),
        row("Network"),
        timeseries("Network throughput",
                   [prom(f"sum by (instance, network_interface_name, network_io_direction) ({r('system_network_io_bytes_total')})",
                         "{{instance}} {{network_interface_name}} {{network_io_direction}}")], w=8, unit="Bps"),
        timeseries("Network errors and drops/s",
                   [prom(f"sum by (instance, network_interface_name) ({r('system_network_errors_total')})",
                         "{{instance}} {{network_interface_name}} errors"),
                    prom(f"sum by (instance, network_interface_name) ({r('system_network_dropped_total')})",
                         "{{instance}} {{network_interface_name}} dropped")], w=8, unit="pps"),
        timeseries("TCP connections by state",
                   [prom(f"sum by (instance, network_connection_state) (system_network_connections{{{N}}})",
                         "{{instance}} {{network_connection_state}}")], w=8),
        row("Top processes"),
        table("Top 10 by CPU",
              [prom(f"topk(10, sum by (instance, process_executable_name, process_pid) ({r('process_cpu_time_seconds_total')}))",
                    instant=True, fmt="table")], unit="percentunit"),
        table("Top 10 by resident memory",
              [prom(f"topk(10, sum by (instance, process_executable_name, process_pid) (process_memory_usage_bytes{{{N}}}))",
                    instant=True, fmt="table")], unit="bytes"),
    ]
    variables = [query_var("instance", "Host", 'label_values(system_uptime_seconds{job="node-agent"}, instance)')]
    return dashboard("node", "Node", "Host CPU, load, memory, paging, disk, filesystems, network "
                     "and top processes from the node agent.", variables, items, time_from="now-3h")


# ---------------------------------------------------------------------------------------------
# Anomalies: the detector's per-series outputs. Its alerts link here with
# ?var-detection={detection}&var-service={service} (anomaly-detector/config/detector.yaml); the
# service is the series' job label (honor_labels on the detector's scrape job).

A = 'detection=~"$detection", job=~"$service"'


def anomaly_dashboard():
    labels = "{{job}} {{http_route}}"
    items = [
        row("Observed vs expected"),
        stat("Series firing", [prom(f"sum(anomaly_firing{{{A}}})", instant=True)], w=6, no_value="0",
             thresholds=["green", (1, "red")]),
        stat("Highest score", [prom(f"max(anomaly_score{{{A}}})", instant=True)], w=6, decimals=2,
             min_=0, max_=1, no_value="no series", thresholds=["green", (0.5, "orange"), (0.9, "red")]),
        stat("Series evaluated", [prom(f'sum(anomaly_detector_series{{detection=~"$detection"}})', instant=True)],
             w=6, no_value="0"),
        stat("Last cycle", [prom('min(anomaly_detector_last_cycle_success{detection=~"$detection"})', instant=True)],
             w=6, no_value="no cycle yet", thresholds=["red", (1, "green")],
             description="1 = every selected detection's last cycle succeeded, 0 = one failed, -1 = not run yet."),
        timeseries("Observed and expected with the band",
                   [prom(f"anomaly_observed_value{{{A}}}", labels + " observed"),
                    prom(f"anomaly_expected_value{{{A}}}", labels + " expected"),
                    prom(f"anomaly_upper_bound{{{A}}}", labels + " upper"),
                    prom(f"anomaly_lower_bound{{{A}}}", labels + " lower")],
                   w=24, h=10,
                   description="The band is the lower and upper bound series; expected and bounds "
                               "are missing while a series warms up."),
        timeseries("Anomaly score", [prom(f"anomaly_score{{{A}}}", labels)], min_=0, max_=1,
                   thresholds=["green", (0.5, "orange"), (0.9, "red")]),
        state_timeline("Firing", [prom(f"anomaly_firing{{{A}}}", labels)], w=12, h=8),
        row("Detector"),
        timeseries("Cycle duration p95",
                   [prom('histogram_quantile(0.95, sum by (detection, le) (rate(anomaly_detector_cycle_duration_seconds_bucket{detection=~"$detection"}[$__rate_interval])))',
                         "{{detection}}")], w=8, unit="s"),
        timeseries("Failures/s by reason",
                   [prom('sum by (detection, reason) (rate(anomaly_detector_failures_total{detection=~"$detection"}[$__rate_interval]))',
                         "{{detection}} {{reason}}")], w=8, unit="ops", no_value="no failures"),
        timeseries("Series per model",
                   [prom('sum by (detection, model) (anomaly_detector_series{detection=~"$detection"})',
                         "{{detection}} {{model}}")], w=8),
        timeseries("Alert deliveries/s",
                   [prom('sum by (sink, status) (rate(anomaly_detector_alerts_sent_total[$__rate_interval]))',
                         "{{sink}} {{status}}"),
                    prom('sum by (sink, reason) (rate(anomaly_detector_alert_failures_total[$__rate_interval]))',
                         "{{sink}} failed {{reason}}")], w=24, unit="ops", no_value="no alerts sent"),
    ]
    variables = [
        query_var("detection", "Detection", "label_values(anomaly_score, detection)"),
        query_var("service", "Service", 'label_values(anomaly_score{detection=~"$detection"}, job)',
                  description="The scored series' job (service namespace/name)."),
    ]
    annotations = [{
        "name": "Anomaly alerts", "datasource": PROM, "enable": True, "hide": False,
        "iconColor": "red", "expr": f"anomaly_firing{{{A}}} == 1", "step": "60s",
        "titleFormat": "AnomalyDetected {{detection}}", "textFormat": "{{job}} {{http_route}}",
        "tagKeys": "detection,job", "useValueForTime": False,
    }]
    return dashboard("anomaly-detector", "Anomaly detector",
                     "Observed vs expected values with the detector's band, scores, firing state "
                     "(also as annotations) and the detector's own health.",
                     variables, items, annotations=annotations, time_from="now-24h")


# ---------------------------------------------------------------------------------------------
# Collector: own metrics, per component and signal (recording rules in prometheus/rules/collector.yml).

C = 'instance=~"$instance", signal=~"$signal"'


def collector_dashboard():
    def by(rule, component, extra=""):
        return prom(f"sum by (instance, {component}, signal) (instance:otelcol_{rule}_items:rate5m{{{C}}}){extra}",
                    "{{" + component + "}} {{signal}}")

    ci = 'job="otel-collector", instance=~"$instance"'
    items = [
        row("Receivers and processors"),
        timeseries("Accepted items/s per receiver", [by("receiver_accepted", "receiver")], w=8, unit="ops"),
        timeseries("Refused items/s per receiver (invalid data)", [by("receiver_refused", "receiver")],
                   w=8, unit="ops"),
        timeseries("Refused items/s per processor (memory_limiter)", [by("processor_refused", "processor")],
                   w=8, unit="ops"),
        row("Exporters"),
        timeseries("Sent items/s per exporter", [by("exporter_sent", "exporter")], w=8, unit="ops"),
        timeseries("Failed items/s per exporter (lost)", [by("exporter_send_failed", "exporter")], w=8, unit="ops"),
        timeseries("Refused items/s per exporter (queue full)", [by("exporter_enqueue_failed", "exporter")],
                   w=8, unit="ops"),
        timeseries("Queue fill per exporter",
                   [prom('max by (instance, exporter) (instance:otelcol_exporter_queue_fill:ratio{instance=~"$instance"})',
                         "{{exporter}}")], unit="percentunit", min_=0, max_=1,
                   thresholds=["green", (0.8, "red")], no_value="no queued exporter", w=8),
        timeseries("Queue size per exporter (batches)",
                   [prom(f"max by (instance, exporter) (otelcol_exporter_queue_size{{{ci}}})", "{{exporter}}")], w=8),
        timeseries("Persistent queue: failed writes/s and damaged records skipped",
                   [prom(f"sum by (instance, exporter, reason) ({rate('otelcol_exporter_persistent_queue_write_errors_total', ci)})",
                         "{{exporter}} write error {{reason}}"),
                    prom(f"sum by (instance, exporter) (increase(otelcol_exporter_persistent_queue_skipped_records_total{{{ci}}}[$__rate_interval]))",
                         "{{exporter}} damaged records skipped")],
                   w=8, min_=0,
                   description="Failed writes refuse data upstream (clients retry): no_space = the queue's volume is full, "
                               "file_too_large = the process's file size limit, other = any other I/O error. Damaged records "
                               "(torn or corrupt on disk) are skipped and lost. Both stay 0 without sending_queue.storage."),
        row("Batching"),
        timeseries("Batch size (items, p50 and p95)",
                   [prom(f"histogram_quantile(0.5, sum by (processor, le) ({rate('otelcol_processor_batch_batch_send_size_bucket', ci)}))", "{{processor}} p50"),
                    prom(f"histogram_quantile(0.95, sum by (processor, le) ({rate('otelcol_processor_batch_batch_send_size_bucket', ci)}))", "{{processor}} p95")]),
        timeseries("Batches sent/s by trigger",
                   [prom(f"sum by (processor) ({rate('otelcol_processor_batch_batch_size_trigger_send_total', ci)})", "{{processor}} size"),
                    prom(f"sum by (processor) ({rate('otelcol_processor_batch_timeout_trigger_send_total', ci)})", "{{processor}} timeout")],
                   unit="ops"),
        row("Process and Prometheus exporter"),
        timeseries("Resident memory", [prom(f"otelcol_process_memory_rss{{{ci}}}", "{{instance}}")], w=8, unit="bytes"),
        timeseries("CPU", [prom(f"rate(otelcol_process_cpu_seconds{{{ci}}}[$__rate_interval])", "{{instance}}")],
                   w=8, unit="percentunit", description="CPU seconds per second (1 = one core)."),
        timeseries("Prometheus exporter: series held and points dropped/s",
                   [prom(f"otelcol_exporter_prometheus_series{{{ci}}}", "{{exporter}} series"),
                    prom(f"sum by (exporter, reason) ({rate('otelcol_exporter_prometheus_dropped_metric_points_total', ci)})",
                         "{{exporter}} dropped {{reason}}")], w=8),
    ]
    variables = [
        query_var("instance", "Collector", 'label_values(otelcol_process_uptime{job="otel-collector"}, instance)'),
        custom_var("signal", "Signal", ["traces", "metrics", "logs"]),
    ]
    return dashboard("collector", "Collector", "Accepted, refused, sent and failed items per component "
                     "and signal, queue fill, batch sizes, memory and CPU of the otel-collector.",
                     variables, items, time_from="now-3h")


DASHBOARDS = [slo_dashboard, service_dashboard, tracing_dashboard, node_dashboard,
              anomaly_dashboard, collector_dashboard]


def render():
    """{file name: JSON text} of every dashboard."""
    out = {}
    for build in DASHBOARDS:
        d = build()
        out[f"{d['uid']}.json"] = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
    return out


def main():
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote grafana/dashboards/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
