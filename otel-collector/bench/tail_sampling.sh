#!/usr/bin/env bash
# Spans/s through tail_sampling beside the plain pipeline (decode -> batch -> sink) in the same
# run, on one core, and the memory the processor holds per in-flight trace and span (counting
# allocator). Bounded: TAIL_BENCH_SECONDS (default 10) per measurement pair, under 2 minutes
# after the build. Usage: otel-collector/bench/tail_sampling.sh   Env: CARGO (default cargo).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
"$CARGO" test --release -p otel-collector --test sampling_bench --no-run
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
timeout 120 "${pin[@]}" "$CARGO" test --release -p otel-collector --test sampling_bench -- \
  --ignored --nocapture --exact --test-threads=1 bench_tail_sampling
