#!/usr/bin/env bash
# Steady-load footprint: telemetrygen sends a fixed span rate to otel-collector (pinned to one core
# with taskset) which forwards over OTLP/gRPC (gzip) to a sink (a second otel-collector with a
# debug exporter). Reports the collector's CPU share of its core and peak RSS over the window,
# spans sent vs arrived, next to the targets (< 3% of a core, < 30 MiB at 10,000 spans/s).
#
#   otel-collector/bench/steady.sh                     # 10,000 spans/s for 60 s
#   RATE=20000 DURATION=30 otel-collector/bench/steady.sh
# Env: RATE (spans/s, 10000), DURATION (s, 60), BATCH (spans/request, 512: the OpenTelemetry
#      SDKs' default max export batch), WORKERS (2),
#      COLLECTOR_CPU (0), LOADGEN_CPU (1), CARGO (cargo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RATE=${RATE:-10000}; DURATION=${DURATION:-60}; BATCH=${BATCH:-512}; WORKERS=${WORKERS:-2}
COLLECTOR_CPU=${COLLECTOR_CPU:-0}; LOADGEN_CPU=${LOADGEN_CPU:-1}; CARGO=${CARGO:-cargo}
command -v taskset >/dev/null || { echo "bench-collector-steady: taskset missing (Debian package util-linux)" >&2; exit 1; }
cd "$ROOT"
"$CARGO" build --release -p otel-collector --bin otel-collector --bin telemetrygen
TARGET_DIR=$("$CARGO" metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/release/otel-collector"; GEN="$TARGET_DIR/release/telemetrygen"
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_IN=$(free_port); P_SINK=$(free_port); P_SINK_HTTP=$(free_port); P_IN_HTTP=$(free_port)
P_MET=$(free_port); P_SINK_MET=$(free_port)
cat > "$WORK/sink.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:$P_SINK}
      http: {endpoint: 127.0.0.1:$P_SINK_HTTP}
exporters:
  debug: {verbosity: basic}
service:
  telemetry: {metrics: {address: 127.0.0.1:$P_SINK_MET}}
  pipelines:
    traces: {receivers: [otlp], exporters: [debug]}
YAML
cat > "$WORK/collector.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: {endpoint: 127.0.0.1:$P_IN}
      http: {endpoint: 127.0.0.1:$P_IN_HTTP}
processors:
  batch: {}
exporters:
  otlp:
    endpoint: 127.0.0.1:$P_SINK
    compression: gzip
    tls: {insecure: true}
service:
  telemetry: {metrics: {address: 127.0.0.1:$P_MET}}
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [otlp]}
YAML
wait_port() { local end=$((SECONDS + 20)); while [ $SECONDS -lt $end ]; do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; return 1; }
metric() { curl -fsS "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 ~ "^"n"(\\{|$)" {s += $2} END {printf "%d\n", s}'; }
RUST_LOG=warn taskset -c "$LOADGEN_CPU" "$BIN" --config "$WORK/sink.yaml" > "$WORK/sink.log" 2>&1 & PIDS+=($!)
RUST_LOG=warn taskset -c "$COLLECTOR_CPU" "$BIN" --config "$WORK/collector.yaml" > "$WORK/collector.log" 2>&1 & CP=$!; PIDS+=("$CP")
wait_port "$P_SINK"; wait_port "$P_IN"; wait_port "$P_MET"
TCK=$(getconf CLK_TCK)
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
# 3 s warm-up so start-up allocation is not charged to the steady state.
taskset -c "$LOADGEN_CPU" "$GEN" traces --otlp-endpoint "127.0.0.1:$P_IN" --rate "$RATE" --duration 3s --workers "$WORKERS" --batch "$BATCH" --attributes 10 > "$WORK/warmup.json"
sleep 1
C0=$(ticks "$CP"); T0=$(date +%s.%N); A0=$(metric "$P_SINK_MET" otelcol_exporter_sent_spans_total)
taskset -c "$LOADGEN_CPU" "$GEN" traces --otlp-endpoint "127.0.0.1:$P_IN" --rate "$RATE" --duration "${DURATION}s" --workers "$WORKERS" --batch "$BATCH" --attributes 10 > "$WORK/send.json"
C1=$(ticks "$CP"); T1=$(date +%s.%N)
sleep 2   # let the last batch (200 ms timeout) and its export arrive
A1=$(metric "$P_SINK_MET" otelcol_exporter_sent_spans_total)
HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$CP/status"); RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$CP/status")
python3 - "$WORK/send.json" "$C0" "$C1" "$T0" "$T1" "$TCK" "$HWM" "$RSS" "$A0" "$A1" "$RATE" "$DURATION" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c0, c1 = int(sys.argv[2]), int(sys.argv[3]); t0, t1 = float(sys.argv[4]), float(sys.argv[5])
tck, hwm, rss = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]); a0, a1 = int(sys.argv[9]), int(sys.argv[10])
cpu = (c1 - c0) / tck; share = cpu / (t1 - t0)
sent, arrived = j["items_sent"], a1 - a0
print(f"steady load: {sys.argv[11]} spans/s target for {sys.argv[12]} s, telemetrygen sent {sent} ({j['items_per_s']:.0f}/s, {j['items_failed']} failed)")
print(f"collector CPU: {cpu:.2f} s over {t1 - t0:.1f} s = {share * 100:.2f}% of one core   (target < 3%)")
print(f"collector peak RSS (VmHWM): {hwm / 1024:.1f} MiB, RSS at end {rss / 1024:.1f} MiB   (target < 30 MiB)")
print(f"arrived at sink: {arrived} spans, lost {sent - arrived}")
print(f"result steady cpu_pct={share * 100:.2f} peak_rss_mib={hwm / 1024:.1f} lost={sent - arrived}")
PY
