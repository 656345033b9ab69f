#!/usr/bin/env bash
# Smoke test of a deployed pipeline (namespace observability, current kubectl context): every
# health endpoint answers, demo traffic shows in Prometheus, a trace of that traffic is in Tempo,
# Grafana answers with the provisioned dashboards. Exit 1 at the first failure, naming it.
set -euo pipefail
NS=observability
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
fail() { echo "smoke test FAILED: $*" >&2; exit 1; }

# forward SERVICE LOCAL_PORT REMOTE_PORT
forward() {
    kubectl -n "$NS" port-forward "svc/$1" "$2:$3" >/dev/null 2>&1 &
    PIDS+=("$!")
}
# wait_ok NAME URL: up to 120 s for a 2xx answer.
wait_ok() {
    for _ in $(seq 1 60); do
        curl -fsS -o /dev/null --max-time 5 "$2" && { echo "ok: $1"; return 0; }
        sleep 2
    done
    fail "$1 ($2) does not answer"
}

forward otel-collector 18888 8888
forward demo-frontend 18080 8080
forward anomaly-detector 19464 9464
forward prometheus 19090 9090
forward alertmanager 19093 9093
forward tempo 13200 3200
forward grafana 13000 80
sleep 3
wait_ok "collector own metrics" http://127.0.0.1:18888/metrics
wait_ok "demo-frontend /ready" http://127.0.0.1:18080/ready
wait_ok "anomaly-detector /health" http://127.0.0.1:19464/health
wait_ok "prometheus /-/ready" http://127.0.0.1:19090/-/ready
wait_ok "alertmanager /-/ready" http://127.0.0.1:19093/-/ready
wait_ok "tempo /ready" http://127.0.0.1:13200/ready
wait_ok "grafana /api/health" http://127.0.0.1:13000/api/health
for pod in $(kubectl -n "$NS" get pods -l app.kubernetes.io/name=node-agent -o name); do
    kubectl -n "$NS" get "$pod" -o jsonpath='{.status.containerStatuses[0].ready}' | grep -q true || fail "$pod not ready"
done
echo "ok: node-agent pods ready"

# Traffic: 60 orders, keeping one trace id.
trace=""
for i in $(seq 1 60); do
    answer=$(curl -fsS --max-time 5 -X POST -H 'Content-Type: application/json' \
        -d "{\"user_id\": $((i % 5 + 1)), \"items\": [{\"product_id\": 1, \"quantity\": 1}]}" \
        http://127.0.0.1:18080/api/orders || true)
    id=$(printf '%s' "$answer" | sed -n 's/.*"trace_id":"\([0-9a-f]\{32\}\)".*/\1/p')
    [[ -n $id ]] && trace=$id
done
[[ -n $trace ]] || fail "no order answered with a trace_id"

# A metrics baseline: the demo's request rate in Prometheus (within 3 minutes).
query='sum(rate(http_server_request_duration_seconds_count[5m]))'
for _ in $(seq 1 36); do
    value=$(curl -fsS --get --data-urlencode "query=$query" http://127.0.0.1:19090/api/v1/query |
        sed -n 's/.*"value":\[[0-9.]*,"\([0-9.e+-]*\)"\].*/\1/p')
    [[ -n $value && $value != 0 ]] && break
    sleep 5
done
[[ -n ${value:-} && $value != 0 ]] || fail "no demo request rate in Prometheus ($query)"
echo "ok: Prometheus has the demo's request rate ($value req/s)"

# The order's trace in Tempo.
for _ in $(seq 1 36); do
    curl -fsS -o /dev/null "http://127.0.0.1:13200/api/traces/$trace" && break
    sleep 5
done
curl -fsS -o /dev/null "http://127.0.0.1:13200/api/traces/$trace" || fail "trace $trace not in Tempo"
echo "ok: trace $trace in Tempo"

# Grafana: the provisioned dashboards.
password=$(kubectl -n "$NS" get secret -o name | grep otel-pipeline-secrets | head -1 | xargs -I{} kubectl -n "$NS" get {} -o jsonpath='{.data.grafana-admin-password}' | base64 -d)
for uid in slo service-performance tracing node anomaly-detector collector; do
    curl -fsS -o /dev/null -u "admin:$password" "http://127.0.0.1:13000/api/dashboards/uid/$uid" || fail "Grafana has no dashboard $uid"
done
echo "ok: Grafana serves the six provisioned dashboards"
echo "smoke test passed"
