#!/usr/bin/env bash
# Latency anomaly for the anomaly detector: a shorter, sharper latency spike than latency.sh,
# after checking that the detector has learnt the normal pattern.
#
#   scripts/anomaly.sh [MS] [SECONDS]     defaults: 500 ms for 120 s
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

ms=${1:-500} seconds=${2:-120}
positive_int MS "$ms"
positive_int SECONDS "$seconds"
need_stack

# The detector says per series which model it uses; warming_up / robust_mad mean too little
# history (docs/anomaly-detector.md: "detector warming up").
models=$(curl -fsS --max-time 5 "http://127.0.0.1:$DETECTOR_PORT/metrics" 2>/dev/null \
    | grep '^anomaly_detector_series{' | grep 'detection="latency_p95"' || true)
if [[ -z $models ]]; then
    echo "warning: the detector reports no latency_p95 series yet (is it running? has traffic reached Prometheus?)"
elif grep -qE 'model="(warming_up|robust_mad)"' <<<"$models"; then
    echo "warning: some latency_p95 series are still warming up; the anomaly may be scored by a simpler model:"
    echo "$models"
fi

put_faults "{\"latency_ms\": $ms, \"latency_jitter_ms\": $((ms / 2)), \"duration_s\": $seconds}"
cat <<MSG
Injected: +$ms ms on every frontend route for $seconds s.
Expect, with the shipped detector config (step 2m, evaluation every 1m; the query's rate window
is 5m): an AnomalyDetected alert for detection="latency_p95", job="demo/demo-frontend" after a
few evaluations, then a resolution some minutes after the spike ends.
Look at:
  - signed webhook deliveries: $SHOWN/webhook.jsonl, path /detector, "signature_ok": true
  - http://127.0.0.1:$DETECTOR_PORT/ (live view) and http://127.0.0.1:$DETECTOR_PORT/api/v1/anomalies
  - Alertmanager: http://127.0.0.1:$ALERTMANAGER_PORT/#/alerts (alertname="AnomalyDetected")
MSG
