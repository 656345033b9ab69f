#!/usr/bin/env bash
# Latency spike: every frontend request is slowed down for a while.
#
#   scripts/latency.sh [MS] [SECONDS]     defaults: 400 ms (with half as much jitter) for 180 s
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

ms=${1:-400} seconds=${2:-180}
positive_int MS "$ms"
positive_int SECONDS "$seconds"
need_stack

put_faults "{\"latency_ms\": $ms, \"latency_jitter_ms\": $((ms / 2)), \"duration_s\": $seconds}"
cat <<MSG
Injected: +$ms ms (jitter $((ms / 2)) ms) on every frontend route for $seconds s.
Expect:
  - the frontend's p95 to jump within half a minute:
    $(graph_url 'job:http_server_request_duration_seconds:histogram_quantile5m{quantile="0.95"}')
  - SLOLatencyBudgetBurn{severity="page"} (requests slower than 250 ms) and HTTPLatencyP95High:
    $PROM/alerts; pages land in $SHOWN/webhook.jsonl (path /alerts/page)
  - once the detector is warmed up, a latency_p95 anomaly (scripts/anomaly.sh explains it).
MSG
