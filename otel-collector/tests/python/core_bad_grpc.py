"""Sends malformed and oversize OTLP/gRPC requests as raw bytes and prints the status codes.

Usage: core_bad_grpc.py 127.0.0.1:PORT
Prints a JSON object {case: status code name} for the Rust test (tests/core_bad_input.rs).
"""

import json
import sys

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span


def good_request():
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="good", start_time_unix_nano=1, end_time_unix_nano=2)
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]).SerializeToString()


def call(channel, method, payload):
    stub = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        stub(payload, timeout=10)
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def main():
    target = sys.argv[1]
    opts = [("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(target, options=opts) as ch:
        traces = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        good = good_request()
        out = {}
        out["truncated"] = call(ch, traces, good[: len(good) // 2])
        out["after_truncated"] = call(ch, traces, good)
        out["garbage"] = call(ch, traces, b"\xff" * 64)
        out["after_garbage"] = call(ch, traces, good)
        out["oversize"] = call(ch, traces, b"\x0a" + b"\x80" * 3 + b"\x01" + b"\x00" * (2 << 20))
        out["after_oversize"] = call(ch, traces, good)
        out["empty"] = call(ch, traces, b"")
        out["unknown_service"] = call(ch, "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export", good)
        out["after_all"] = call(ch, traces, good)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
