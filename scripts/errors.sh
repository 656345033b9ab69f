#!/usr/bin/env bash
# Error spike: the demo frontend answers a share of its requests with 5xx for a while.
#
#   scripts/errors.sh [RATE] [SECONDS]     defaults: 0.5 (half the requests) for 120 s
#
# The fault clears itself after SECONDS (`duration_s`); `curl -XDELETE :8080/admin/faults`
# clears it at once.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

rate=${1:-0.5} seconds=${2:-120}
[[ $rate =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] || die "RATE must be between 0 and 1, got '$rate'"
positive_int SECONDS "$seconds"
need_stack

put_faults "{\"error_rate\": $rate, \"duration_s\": $seconds}"
cat <<MSG
Injected: error_rate $rate on the frontend for $seconds s.
Expect, with the intervals of make up (scrape and rule evaluation every 15 s):
  - within about a minute SLOAvailabilityBudgetBurn{severity="page"} fires (fast burn, 14.4x over
    5m and 1h): $PROM/alerts
  - Alertmanager pages after its group_wait (10 s): http://127.0.0.1:$ALERTMANAGER_PORT/#/alerts
  - the page lands in $SHOWN/webhook.jsonl with path /alerts/page (also GET http://127.0.0.1:$WEBHOOK_PORT/)
  - HTTPErrorRatioHigh and the detector's error_ratio anomaly may follow
  - after the spike the 5m and 30m windows must drain: the page resolves some minutes later and
    a "resolved" delivery follows.
Error ratio: $(graph_url 'job:http_server_request_error:ratio_rate5m')
MSG
