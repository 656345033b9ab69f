#!/usr/bin/env bash
# Spans/s through the trace -> metrics connectors (spanmetrics + servicegraph) next to the plain
# traces pipeline, alternated in the same run, in one process pinned to one core
# (tests/conn_bench.rs says what each pipeline does). Bounded: CONN_BENCH_ROUNDS (2) x 2
# pipelines x CONN_BENCH_SECONDS (5) s, plus the release build.
# Usage: otel-collector/bench/connectors.sh   Env: CONN_BENCH_SECONDS, CONN_BENCH_ROUNDS, CARGO.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
command -v taskset >/dev/null || { echo "taskset missing (util-linux)"; exit 1; }
"$CARGO" test --release -p otel-collector --test conn_bench --no-run
taskset -c 0 "$CARGO" test --release -p otel-collector --test conn_bench -- \
  --ignored --nocapture --exact --test-threads=1 bench_connectors
