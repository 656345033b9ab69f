"""Exports one span with the Python SDK's OTLP/gRPC and OTLP/HTTP exporters at once, to a
collector that refuses data at first, and reports how the exporters retried.

Usage: core_backpressure_sdk.py GRPC_HOST:PORT HTTP_BASE_URL
Prints, flushed, one line `retrying <exporter> <delay>` each time an exporter logs a transient
error and waits `<delay>` seconds, then a last line with a JSON object {exporter: export result
name} (for tests/core_backpressure.rs).
"""

import json
import logging
import re
import sys
import threading

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

OUT_LOCK = threading.Lock()


def say(line):
    with OUT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class RetryReporter(logging.Handler):
    """Turns the exporters' "Transient error ... retrying in N.NNs" warnings into lines."""

    def emit(self, record):
        msg = record.getMessage()
        m = re.search(r"retrying in ([0-9.]+)s", msg)
        if "Transient error" in msg and m:
            say(f"retrying {threading.current_thread().name} {m.group(1)}")


def one_span(name):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "backpressure-sdk"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("backpressure").start_as_current_span(name):
        pass
    return memory.get_finished_spans()


def main():
    grpc_target, http_base = sys.argv[1], sys.argv[2]
    handler = RetryReporter(level=logging.WARNING)
    logging.getLogger("opentelemetry").addHandler(handler)
    exporters = {
        "grpc": GrpcExporter(endpoint=grpc_target, insecure=True, timeout=60),
        "http": HttpExporter(endpoint=f"{http_base}/v1/traces", timeout=60),
    }
    results = {}

    def run(name, exporter):
        results[name] = exporter.export(one_span(f"sdk-{name}")).name

    threads = [threading.Thread(target=run, name=n, args=(n, e)) for n, e in exporters.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say(json.dumps(results))


if __name__ == "__main__":
    main()
