"""Sends traces, metrics and logs to an OTLP collector with the OpenTelemetry Python SDK
(gRPC and HTTP/protobuf) and as hand-written OTLP JSON over HTTP (the SDK has no JSON exporter).

Prints one JSON object on stdout listing what was sent, for the Rust test (tests/core_pipeline.rs)
to check against what arrived at the downstream collector's file exporter.

Usage: core_send.py --grpc 127.0.0.1:PORT --http http://127.0.0.1:PORT --run RUN_ID
"""

import argparse
import json
import logging
import sys
import urllib.request

from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

SPANS = 5
POINTS = 3
LOGS = 4


def send_sdk(transport, run, exporters, expected):
    span_exp, metric_exp, log_exp = exporters
    resource = Resource.create({"service.name": f"core-test-{transport}", "test.run": run})

    tp = TracerProvider(resource=resource)
    tp.add_span_processor(SimpleSpanProcessor(span_exp))
    tracer = tp.get_tracer("core-test")
    with tracer.start_as_current_span(f"{transport}-parent", attributes={"test.transport": transport}):
        for i in range(SPANS):
            attrs = {"test.transport": transport, "test.seq": i, "test.float": 1.5, "test.bool": True}
            with tracer.start_as_current_span(f"{transport}-span-{i}", attributes=attrs):
                pass
    tp.force_flush()
    tp.shutdown()
    expected["spans"].append({"name": f"{transport}-parent", "attrs": {"test.transport": transport}})
    for i in range(SPANS):
        expected["spans"].append({
            "name": f"{transport}-span-{i}",
            "attrs": {"test.transport": transport, "test.seq": i, "test.float": 1.5, "test.bool": True},
        })

    reader = PeriodicExportingMetricReader(metric_exp, export_interval_millis=3_600_000)
    mp = MeterProvider(resource=resource, metric_readers=[reader])
    meter = mp.get_meter("core-test")
    counter = meter.create_counter("core.test.requests", unit="1")
    hist = meter.create_histogram("core.test.latency", unit="s")
    for i in range(POINTS):
        counter.add(i + 1, {"test.transport": transport, "test.seq": i})
        expected["points"].append({"metric": "core.test.requests", "attrs": {"test.transport": transport, "test.seq": i}})
    hist.record(0.25, {"test.transport": transport})
    expected["points"].append({"metric": "core.test.latency", "attrs": {"test.transport": transport}})
    mp.force_flush()
    mp.shutdown()

    lp = LoggerProvider(resource=resource)
    lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
    handler = LoggingHandler(level=logging.INFO, logger_provider=lp)
    logger = logging.getLogger(f"core.{transport}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    for i in range(LOGS):
        logger.warning(f"{transport}-log-{i}", extra={"test.transport": transport, "test.seq": i})
        expected["logs"].append({"body": f"{transport}-log-{i}", "attrs": {"test.transport": transport, "test.seq": i}})
    lp.force_flush()
    lp.shutdown()
    logger.removeHandler(handler)


def post_json(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 200 or not resp.headers["Content-Type"].startswith("application/json"):
            raise SystemExit(f"{url}: unexpected answer {resp.status} {resp.headers['Content-Type']}")
        json.loads(resp.read() or b"{}")


def kv(key, value):
    if isinstance(value, bool):
        v = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}  # int64 as a string, per the OTLP JSON mapping
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": value}
    return {"key": key, "value": v}


def send_json(base, run, expected):
    transport = "http-json"
    resource = {"attributes": [kv("service.name", "core-test-http-json"), kv("test.run", run)]}
    spans = []
    for i in range(SPANS):
        attrs = {"test.transport": transport, "test.seq": i, "test.float": 1.5, "test.bool": True}
        spans.append({
            "traceId": "5b8efff798038103d269b633813fc60c",  # hex, not base64
            "spanId": f"eee19b7ec3c1b17{i}",
            "name": f"{transport}-span-{i}",
            "kind": 2,  # enum as an integer
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "attributes": [kv(k, v) for k, v in attrs.items()],
        })
        expected["spans"].append({"name": f"{transport}-span-{i}", "attrs": attrs})
    post_json(f"{base}/v1/traces", {"resourceSpans": [{"resource": resource, "scopeSpans": [{"scope": {"name": "json"}, "spans": spans}]}]})

    points = []
    for i in range(POINTS):
        attrs = {"test.transport": transport, "test.seq": i}
        points.append({"asInt": str(i + 1), "timeUnixNano": "1544712660000000000",
                       "attributes": [kv(k, v) for k, v in attrs.items()]})
        expected["points"].append({"metric": "core.test.requests", "attrs": attrs})
    metric = {"name": "core.test.requests", "unit": "1",
              "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": points}}
    post_json(f"{base}/v1/metrics", {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": [metric]}]}]})

    records = []
    for i in range(LOGS):
        attrs = {"test.transport": transport, "test.seq": i}
        records.append({"timeUnixNano": "1544712660000000000", "severityNumber": 13, "severityText": "WARN",
                        "body": {"stringValue": f"{transport}-log-{i}"},
                        "attributes": [kv(k, v) for k, v in attrs.items()]})
        expected["logs"].append({"body": f"{transport}-log-{i}", "attrs": attrs})
    post_json(f"{base}/v1/logs", {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", required=True, help="host:port of the OTLP/gRPC receiver")
    ap.add_argument("--http", required=True, help="base URL of the OTLP/HTTP receiver")
    ap.add_argument("--run", required=True)
    args = ap.parse_args()
    expected = {"spans": [], "points": [], "logs": []}
    send_sdk("grpc", args.run, (
        GrpcSpans(endpoint=args.grpc, insecure=True),
        GrpcMetrics(endpoint=args.grpc, insecure=True),
        GrpcLogs(endpoint=args.grpc, insecure=True),
    ), expected)
    send_sdk("http-protobuf", args.run, (
        HttpSpans(endpoint=f"{args.http}/v1/traces"),
        HttpMetrics(endpoint=f"{args.http}/v1/metrics"),
        HttpLogs(endpoint=f"{args.http}/v1/logs"),
    ), expected)
    send_json(args.http, args.run, expected)
    json.dump(expected, sys.stdout)


if __name__ == "__main__":
    main()
