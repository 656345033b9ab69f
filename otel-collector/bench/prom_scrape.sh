#!/usr/bin/env bash
# Scrape latency of a 100k-series `prometheus` exporter next to a scrape of
# prometheus-node-exporter in the same run (20 sequential scrapes each after warm-up), with
# ratios. Usage: otel-collector/bench/prom_scrape.sh   (needs `make deps` for node_exporter)
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO=${CARGO:-cargo}
command -v prometheus-node-exporter >/dev/null || { echo "prometheus-node-exporter missing: run \`make deps\`"; exit 1; }
"$CARGO" test --release -p otel-collector --test prom_bench --no-run
"$CARGO" test --release -p otel-collector --test prom_bench -- \
  --ignored --nocapture --exact --test-threads=1 bench_scrape
