#!/usr/bin/env bash
# Data points/s OTLP in -> Prometheus translation -> remote write (protobuf+snappy) out to a
# local HTTP sink, on one core. Two figures: (1) the exporter in-process (protobuf decode ->
# exporter -> sink, process pinned with taskset, one tokio thread); (2) the real binary:
# telemetrygen (core 1) -> otel-collector pinned to core 0 (otlp -> batch ->
# prometheusremotewrite) -> sink. Prints wall-clock and per-CPU-second rates. Usage: otel-collector/bench/prom_remote_write.sh
# Env: PROM_BENCH_SECONDS (default 10), CARGO (default cargo).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
command -v taskset >/dev/null || { echo "taskset missing (util-linux)"; exit 1; }
"$CARGO" test --release -p otel-collector --test prom_bench --no-run
taskset -c 0 "$CARGO" test --release -p otel-collector --test prom_bench -- \
  --ignored --nocapture --exact --test-threads=1 bench_remote_write
# The harness and sink on core 1, the collector pins itself to core 0 (taskset inside the test).
taskset -c 1 "$CARGO" test --release -p otel-collector --test prom_bench -- \
  --ignored --nocapture --exact --test-threads=1 bench_collector_remote_write
