#!/usr/bin/env bash
# Agent overhead side by side with node_exporter, in the same run (both measured at once).
#
#   node-agent: 1 s interval, top-N on (default 5), exporting over OTLP/gRPC to a local sink
#               (node-agent/examples/agent_otlp_sink.rs), measured as a push agent;
#   node_exporter: scraped every 1 s with curl.
# Both through ../shared/bench/agent_overhead.sh (relative to the repo root) for
# BENCH_SECONDS (default 120). Prints both figure lines and the ratios agent / node_exporter.
#
# usage: node-agent/bench/overhead.sh   (from the repo root; `make bench-node-agent`)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
script=../shared/bench/agent_overhead.sh
if [ ! -f "$script" ]; then
  echo "bench-node-agent: $script (relative to the repo root) is missing; it measures CPU and RSS of the agents" >&2
  exit 1
fi
secs=${BENCH_SECONDS:-120}
target=${CARGO_TARGET_DIR:-$root/target}
agent=$target/release/node-agent
sink=$target/release/examples/agent_otlp_sink
for b in "$agent" "$sink"; do
  [ -x "$b" ] || { echo "missing $b: run cargo build --release -p node-agent --bins --examples" >&2; exit 1; }
done
command -v prometheus-node-exporter >/dev/null || { echo "prometheus-node-exporter not found: run make deps" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sink_port=$(free_port); ne_port=$(free_port)
out=$(mktemp -d)
sink_pid=""
cleanup() {
  if [ -n "$sink_pid" ]; then
    kill -TERM "$sink_pid" 2>/dev/null || true
    wait "$sink_pid" 2>/dev/null || true
  fi
  rm -rf "$out"
}
trap cleanup EXIT

"$sink" "127.0.0.1:$sink_port" > "$out/sink.txt" 2>&1 &
sink_pid=$!
sleep 0.5

echo "== node-agent (1 s interval, top_n=5, OTLP/gRPC to 127.0.0.1:$sink_port) and node_exporter (scraped every 1 s), ${secs} s, same run"
env OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$sink_port" OTEL_METRIC_EXPORT_INTERVAL=1000 \
  RUST_LOG=warn \
  bash "$script" -d "$secs" -i 1 -- "$agent" > "$out/agent.txt" 2>&1 &
a=$!
bash "$script" -d "$secs" -i 1 -u "http://127.0.0.1:$ne_port/metrics" -- \
  prometheus-node-exporter "--web.listen-address=127.0.0.1:$ne_port" > "$out/ne.txt" 2>&1 &
n=$!
wait "$a" || { echo "agent measurement failed:"; cat "$out/agent.txt"; exit 1; }
wait "$n" || { echo "node_exporter measurement failed:"; cat "$out/ne.txt"; exit 1; }
kill -TERM "$sink_pid"; wait "$sink_pid" || true; sink_pid=""

echo "-- node-agent";    cat "$out/agent.txt"
echo "-- node_exporter"; cat "$out/ne.txt"
echo "-- sink";          cat "$out/sink.txt"
field() { awk -v k="$1" '{for(i=1;i<=NF;i++){split($i,p,"="); if(p[1]==k) v=p[2]}} END{print v}' "$2"; }
ac=$(field cpu_seconds "$out/agent.txt"); nc=$(field cpu_seconds "$out/ne.txt")
ar=$(field peak_rss_kb "$out/agent.txt"); nr=$(field peak_rss_kb "$out/ne.txt")
awk -v ac="$ac" -v nc="$nc" -v ar="$ar" -v nr="$nr" -v s="$secs" 'BEGIN{
  printf "summary window_s=%d agent_cpu_s=%s node_exporter_cpu_s=%s cpu_ratio=%.3f (target < 0.5)\n", s, ac, nc, (nc > 0 ? ac / nc : 0)
  printf "summary agent_peak_rss_mib=%.1f node_exporter_peak_rss_mib=%.1f rss_ratio=%.3f (target agent < 15 MiB)\n", ar / 1024, nr / 1024, (nr > 0 ? ar / nr : 0)
}'
