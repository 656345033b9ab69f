"""A small OpenTelemetry SDK app for the Prometheus exporter tests.

Records a fixed set of measurements (counter, histogram, gauge, up-down counter) and sends them
over OTLP/HTTP protobuf to OTEL_EXPORTER_OTLP_ENDPOINT, then exits. Temporality follows
OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE (cumulative by default, `delta` for the delta
test). Histogram measurements are taken inside a span, so they carry exemplars.
With PROM_APP_ROUNDS=N it exports N times (one export per round, values added per round).

Expected in Prometheus after R rounds (job="shop/checkout", instance="checkout-1"):
  orders_placed_total{payment_method="card"}   = 5 * R
  orders_placed_total{payment_method="cash"}   = 2 * R
  http_server_request_duration_seconds_count   = 100 * R, p95 in (0.75, 1.0]
  active_requests                               = 3 * R  (up-down counter: +5 -2 per round)
  system_cpu_utilization_ratio                  = 0.42
  target_info{deployment_environment="test", ...} = 1
"""

import os
import sys

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def main() -> int:
    endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/")
    rounds = int(os.environ.get("PROM_APP_ROUNDS", "1"))
    exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics")
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.namespace": "shop",
            "service.instance.id": "checkout-1",
            "deployment.environment": "test",
        }
    )
    views = [
        View(
            instrument_name="http.server.request.duration",
            aggregation=ExplicitBucketHistogramAggregation(
                boundaries=[0.1, 0.25, 0.5, 0.75, 1.0, 2.5]
            ),
        )
    ]
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    meter = provider.get_meter("prom.test.app", "0.1.0")

    orders = meter.create_counter("orders.placed", unit="{order}", description="Orders placed")
    duration = meter.create_histogram(
        "http.server.request.duration", unit="s", description="Request duration"
    )
    active = meter.create_up_down_counter(
        "active.requests", unit="{request}", description="In-flight requests"
    )
    meter.create_observable_gauge(
        "system.cpu.utilization",
        callbacks=[lambda _options: [Observation(0.42, {"cpu": "0"})]],
        unit="1",
        description="CPU utilization",
    )

    # Measurements taken inside a sampled span carry exemplars (trace_id/span_id) with the SDK's
    # default trace-based exemplar filter.
    tracer = TracerProvider(resource=resource).get_tracer("prom.test.app")

    for _ in range(rounds):
        for _ in range(5):
            orders.add(1, {"payment.method": "card"})
        orders.add(2, {"payment.method": "cash"})
        # 100 requests: 0.01 .. 1.00 s, so p95 is 0.95 s (bucket 0.75..1.0).
        with tracer.start_as_current_span("orders"):
            for i in range(1, 101):
                duration.record(i / 100.0, {"http.route": "/api/orders"})
            orders.add(0, {"payment.method": "card"})
        active.add(5)
        active.add(-2)
        if not provider.force_flush(timeout_millis=10_000):
            print("force_flush failed", file=sys.stderr)
            return 1
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
