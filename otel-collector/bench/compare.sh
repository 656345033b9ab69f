#!/usr/bin/env bash
# OTLP/gRPC throughput of otel-collector next to rotel, with the shared yardstick.
#
#   otel-collector/bench/compare.sh            # from anywhere; knobs of compare.sh pass through
#   REPEAT=3 DURATION=30 otel-collector/bench/compare.sh
#
# Builds otel-collector --release, then runs ../shared/bench/otlp/compare.sh (relative to the
# repo root) with CANDIDATE_CMD pointing at the built binary. compare.sh writes an otelcol config
# (otlp receiver, batch, otlp exporter with gzip), pins each collector to one core, and prints
# rotel's figures, ours, and the ratios (last line: `ratio traces=X metrics=Y rss=Z`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CMP="$ROOT/../shared/bench/otlp/compare.sh"
if [ ! -f "$CMP" ]; then
  echo "bench-collector: $CMP not found; the shared OTLP bench must be checked out at ../shared/bench/otlp next to this repository" >&2
  exit 1
fi
command -v taskset >/dev/null || { echo "bench-collector: taskset missing (Debian package util-linux)" >&2; exit 1; }
CARGO=${CARGO:-cargo}
cd "$ROOT"
"$CARGO" build --release -p otel-collector --bin otel-collector
TARGET_DIR=$("$CARGO" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/release/otel-collector"
[ -x "$BIN" ] || { echo "bench-collector: $BIN was not built" >&2; exit 1; }
echo "[bench-collector] candidate: $BIN ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))" >&2
# Only warnings from the collector in its log: info lines are not needed for the figures.
CANDIDATE_CMD="env RUST_LOG=warn $BIN --config {config}" exec bash "$CMP"
