#!/usr/bin/env bash
# Extra demo traffic on top of what `make up` sends: runs loadgen against the demo-app.
#
#   scripts/traffic.sh [RPS] [DURATION] [PATTERN]     defaults: 50 req/s, 2m, flat
#
# Uses the loadgen of the release build (`make release`); DEMO_PORT etc. as for `make up`.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "$0")/common.sh"

rps=${1:-50} duration=${2:-2m} pattern=${3:-flat}
positive_int RPS "$rps"
[[ $pattern == flat || $pattern == diurnal ]] || die "PATTERN must be flat or diurnal, got '$pattern'"
[[ -x $STACK_BIN/loadgen ]] || die "no $STACK_BIN/loadgen: run 'make release'"
need_stack

cat <<MSG
Sending $rps req/s ($pattern) for $duration to $DEMO.
Expect: the request rate of job="demo/demo-frontend" to rise by about $rps req/s within
half a minute (metrics are exported every 10 s and scraped every 15 s); no alert.
Look at:
  $(graph_url 'sum by (job) (rate(http_server_request_duration_seconds_count[1m]))')
  detector view: http://127.0.0.1:$DETECTOR_PORT/ (request_rate follows the new level after a while)
MSG
exec "$STACK_BIN/loadgen" --target "$DEMO" --rps "$rps" --duration "$duration" --pattern "$pattern"
