#!/usr/bin/env bash
# Validates the shipped sample config with the given binary, then starts the collector with it
# on free loopback ports, checks the health endpoint answers, and stops it with SIGTERM
# (expects exit 0). Usage: check-sample-config.sh BINARY CONFIG
set -euo pipefail
bin=$1
config=$2
"$bin" validate --config "$config"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
health=$(free_port)
OTLP_GRPC_PORT=$(free_port) OTLP_HTTP_PORT=$(free_port) COLLECTOR_METRICS_PORT=$(free_port) PROM_EXPORTER_PORT=$(free_port) \
HEALTH_PORT=$health TRACES_FILE="$work/traces.jsonl" OTELCOL_BIND=127.0.0.1 \
    "$bin" --config "$config" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$health/" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/log"; echo "collector exited early" >&2; exit 1; fi
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$health/" >/dev/null || { cat "$work/log"; echo "health check never became ready" >&2; kill "$pid"; exit 1; }
kill -TERM "$pid"
if wait "$pid"; then
    echo "sample config: valid, started, healthy, stopped with exit 0"
else
    rc=$?; cat "$work/log"; echo "collector exited with $rc after SIGTERM" >&2; exit 1
fi
