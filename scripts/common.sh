# Shared by the scenario scripts (sourced, not run): the stack's ports (the same variables and
# defaults as .ci/stack.sh) and small helpers around the demo-app's /admin/faults.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${DEMO_PORT:=8080}" "${PROMETHEUS_PORT:=9090}" "${ALERTMANAGER_PORT:=9093}"
: "${WEBHOOK_PORT:=9095}" "${DETECTOR_PORT:=9464}" "${STACK_BIN:=$ROOT/target/release}"
: "${STACK_RUN:=$ROOT/.run}"
# Used by the scripts that source this file.
# shellcheck disable=SC2034
DEMO="http://127.0.0.1:$DEMO_PORT"
# shellcheck disable=SC2034
PROM="http://127.0.0.1:$PROMETHEUS_PORT"
# shellcheck disable=SC2034
SHOWN=${STACK_RUN#"$ROOT"/}

die() { echo "error: $*" >&2; exit 1; }

# need_stack: fails with a hint when the demo-app does not answer (the stack is not up).
need_stack() {
    curl -fsS -o /dev/null --max-time 2 "$DEMO/health" 2>/dev/null \
        || die "the demo-app does not answer on $DEMO: start the stack with 'make up' (or set DEMO_PORT)"
}

# positive_int NAME VALUE: fails unless VALUE is a whole number above zero.
positive_int() { [[ $2 =~ ^[0-9]+$ && $2 -gt 0 ]] || die "$1 must be a whole number above 0, got '$2'"; }

# put_faults JSON: sets the frontend's faults (PUT /admin/faults) and prints the new state.
put_faults() {
    curl -fsS --max-time 5 -X PUT "$DEMO/admin/faults" -H 'content-type: application/json' -d "$1" \
        || die "PUT $DEMO/admin/faults refused $1"
    echo
}

# graph_url EXPR: Prometheus' graph page for EXPR over the last 30 minutes.
graph_url() {
    local q
    q=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1")
    echo "$PROM/graph?g0.expr=$q&g0.tab=0&g0.range_input=30m"
}
