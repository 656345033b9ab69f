#!/usr/bin/env bash
# Runs the whole pipeline on 127.0.0.1 for `make up` / `make status` / `make down`.
#
#   .ci/stack.sh up       build (release), start every service, print where everything is
#   .ci/stack.sh status   show which services run and answer
#   .ci/stack.sh down     stop them (SIGTERM, then SIGKILL after 20 s)
#
# State and logs live in .run/ (pid files, logs, Prometheus/Alertmanager data). Every port can be
# overridden by the environment variable named in PORTS below.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}

# Knobs for short runs (the end-to-end test, e2e/): where binaries and state live, which
# detector config and rule files are used, and how often metrics are exported, scraped and
# evaluated. The defaults are what `make up` has always used.
: "${STACK_BIN:=$ROOT/target/release}" "${STACK_RUN:=$ROOT/.run}"
: "${DETECTOR_CONFIG:=anomaly-detector/config/detector.yaml}"
: "${PROMETHEUS_RULES:=$ROOT/prometheus/rules/*.yml}"
: "${PROMETHEUS_SCRAPE_INTERVAL:=15s}" "${PROMETHEUS_EVAL_INTERVAL:=15s}"
: "${METRIC_EXPORT_INTERVAL_MS:=10000}" "${LOADGEN_PATTERN:=diurnal}" "${LOADGEN_DAY:=10m}"
# The local stack keeps every trace (its trace file is the demo's trace store); the sample
# config's default keeps errors, slow traces and 10 % of the rest (docs/sampling.md).
: "${TAIL_SAMPLING_PERCENT:=100}" "${TAIL_SAMPLING_WAIT:=2s}"
RUN=$STACK_RUN
BIN=$STACK_BIN
# RUN as printed: relative to the checkout when it is inside it.
SHOWN=${RUN#"$ROOT"/}

: "${PROMETHEUS_PORT:=9090}" "${ALERTMANAGER_PORT:=9093}" "${WEBHOOK_PORT:=9095}"
: "${OTLP_GRPC_PORT:=4317}" "${OTLP_HTTP_PORT:=4318}" "${COLLECTOR_METRICS_PORT:=8888}"
: "${PROM_EXPORTER_PORT:=8889}" "${HEALTH_PORT:=13133}" "${DEMO_PORT:=8080}"
: "${DEMO_INVENTORY_PORT:=8081}" "${DEMO_PAYMENT_PORT:=8082}" "${DETECTOR_PORT:=9464}"
: "${LOADGEN_RPS:=20}" "${LOADGEN_DURATION:=6h}"
# Prometheus keeps 15 days of data (a flag: prometheus.yml has no retention key).
: "${PROMETHEUS_RETENTION:=15d}"
# Alertmanager's webhook receivers (prometheus/alertmanager.yml): by default the local sink.
: "${ALERT_PAGE_WEBHOOK_URL:=http://127.0.0.1:$WEBHOOK_PORT/alerts/page}"
: "${ALERT_TICKET_WEBHOOK_URL:=http://127.0.0.1:$WEBHOOK_PORT/alerts/ticket}"
: "${ALERT_DEFAULT_WEBHOOK_URL:=http://127.0.0.1:$WEBHOOK_PORT/alerts/default}"
# Shared secret of the detector's signed webhook and the sink that verifies it.
: "${WEBHOOK_SECRET:=demo-secret}"
export WEBHOOK_SECRET
SERVICES=(prometheus alertmanager webhook-sink otel-collector demo-app node-agent anomaly-detector loadgen)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "error: $*" >&2; exit 1; }

pid_of() { local f=$RUN/$1.pid; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

# start NAME CMD...: runs CMD in the background with its log in .run/NAME.log.
start() {
    local name=$1; shift
    if pid_of "$name" >/dev/null; then log "$name already running (pid $(pid_of "$name"))"; return; fi
    nohup "$@" >"$RUN/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    log "started $name (pid $!, log $SHOWN/$name.log)"
}

# wait_http NAME URL: waits up to 30 s for URL to answer 2xx.
wait_http() {
    local name=$1 url=$2
    for _ in $(seq 1 60); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        pid_of "$name" >/dev/null || die "$name exited; last lines of $SHOWN/$name.log:\n$(tail -20 "$RUN/$name.log")"
        sleep 0.5
    done
    die "$name did not answer on $url within 30 s (see $SHOWN/$name.log)"
}

# owns_port NAME PORT: fails naming PORT unless the process started as NAME is the one listening
# on it (on a machine with systemd, Debian's postinst may have started its own prometheus or
# alertmanager on the default ports, which would answer wait_http in our place).
owns_port() {
    local name=$1 port=$2 pid hex inode
    pid=$(pid_of "$name") || die "$name exited; last lines of .run/$name.log:\n$(tail -20 "$RUN/$name.log")"
    hex=$(printf ':%04X' "$port")
    while read -r inode; do
        # The listening socket is one of the started process's descriptors.
        find "/proc/$pid/fd" -maxdepth 1 -lname "socket:\[$inode\]" 2>/dev/null | grep -q . && return 0
    done < <(awk -v p="$hex" '$4 == "0A" && substr($2, length($2) - 4) == p {print $10}' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    die "port $port answers, but not from the $name started here (pid $pid): another process listens on it (Debian's prometheus or prometheus-alertmanager service? 'systemctl disable --now' it), or pick another port (variables at the top of .ci/stack.sh)"
}

render_configs() {
    sed -e "s/127.0.0.1:8889/127.0.0.1:$PROM_EXPORTER_PORT/; s/127.0.0.1:8888/127.0.0.1:$COLLECTOR_METRICS_PORT/" \
        -e "s/127.0.0.1:9464/127.0.0.1:$DETECTOR_PORT/; s/127.0.0.1:9093/127.0.0.1:$ALERTMANAGER_PORT/" \
        -e "s/127.0.0.1:9090/127.0.0.1:$PROMETHEUS_PORT/; s#rules/\*.yml#$PROMETHEUS_RULES#" \
        -e "s/scrape_interval: 15s/scrape_interval: $PROMETHEUS_SCRAPE_INTERVAL/" \
        -e "s/evaluation_interval: 15s/evaluation_interval: $PROMETHEUS_EVAL_INTERVAL/" \
        prometheus/prometheus.yml >"$RUN/prometheus.yml"
    sed -e "s#http://127.0.0.1:9095/alerts/page#$ALERT_PAGE_WEBHOOK_URL#" \
        -e "s#http://127.0.0.1:9095/alerts/ticket#$ALERT_TICKET_WEBHOOK_URL#" \
        -e "s#http://127.0.0.1:9095/alerts/default#$ALERT_DEFAULT_WEBHOOK_URL#" \
        prometheus/alertmanager.yml >"$RUN/alertmanager.yml"
}

up() {
    mkdir -p "$RUN"
    command -v prometheus >/dev/null || die "prometheus not installed: run 'make deps'"
    [[ -x $BIN/otel-collector ]] || die "release binaries missing: run 'make release'"
    render_configs

    start prometheus prometheus --config.file="$RUN/prometheus.yml" --storage.tsdb.path="$RUN/prometheus" \
        --storage.tsdb.retention.time="$PROMETHEUS_RETENTION" \
        --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --web.enable-remote-write-receiver \
        --web.enable-lifecycle --enable-feature=exemplar-storage,native-histograms
    start alertmanager prometheus-alertmanager --config.file="$RUN/alertmanager.yml" \
        --storage.path="$RUN/alertmanager" --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
        --cluster.listen-address=
    start webhook-sink python3 .ci/webhook_sink.py --listen "127.0.0.1:$WEBHOOK_PORT" --log "$RUN/webhook.jsonl"

    # Without TEMPO_ENDPOINT there is no Tempo here: traces go to the file exporter only.
    local collector_configs=(--config otel-collector/config/otel-collector.yaml)
    [[ -n ${TEMPO_ENDPOINT:-} ]] || collector_configs+=(--config otel-collector/config/no-tempo.yaml)
    OTELCOL_BIND=127.0.0.1 OTLP_GRPC_PORT=$OTLP_GRPC_PORT OTLP_HTTP_PORT=$OTLP_HTTP_PORT \
    COLLECTOR_METRICS_PORT=$COLLECTOR_METRICS_PORT PROM_EXPORTER_PORT=$PROM_EXPORTER_PORT \
    HEALTH_PORT=$HEALTH_PORT TRACES_FILE="$RUN/traces.jsonl" \
    TAIL_SAMPLING_PERCENT=$TAIL_SAMPLING_PERCENT TAIL_SAMPLING_WAIT=$TAIL_SAMPLING_WAIT \
        start otel-collector "$BIN/otel-collector" "${collector_configs[@]}"
    wait_http otel-collector "http://127.0.0.1:$HEALTH_PORT/"

    local otlp="http://127.0.0.1:$OTLP_GRPC_PORT"
    DEMO_ADDR="127.0.0.1:$DEMO_PORT" DEMO_INVENTORY_ADDR="127.0.0.1:$DEMO_INVENTORY_PORT" \
    DEMO_PAYMENT_ADDR="127.0.0.1:$DEMO_PAYMENT_PORT" OTEL_EXPORTER_OTLP_ENDPOINT=$otlp \
    OTEL_METRIC_EXPORT_INTERVAL=$METRIC_EXPORT_INTERVAL_MS \
        start demo-app "$BIN/demo-app"
    wait_http demo-app "http://127.0.0.1:$DEMO_PORT/health"

    OTEL_EXPORTER_OTLP_ENDPOINT=$otlp OTEL_METRIC_EXPORT_INTERVAL=$METRIC_EXPORT_INTERVAL_MS \
        start node-agent "$BIN/node-agent"

    PROMETHEUS_URL="http://127.0.0.1:$PROMETHEUS_PORT" ALERTMANAGER_URL="http://127.0.0.1:$ALERTMANAGER_PORT" \
    DETECTOR_ADDR="127.0.0.1:$DETECTOR_PORT" OTEL_EXPORTER_OTLP_ENDPOINT=$otlp \
    DETECTOR_WEBHOOK_URL="http://127.0.0.1:$WEBHOOK_PORT/detector" DETECTOR_WEBHOOK_SECRET=$WEBHOOK_SECRET \
    DETECTOR_HISTORY="${DETECTOR_HISTORY:-$RUN/anomalies.db}" \
        start anomaly-detector "$BIN/anomaly-detector" --config "$DETECTOR_CONFIG"
    wait_http anomaly-detector "http://127.0.0.1:$DETECTOR_PORT/health"

    start loadgen "$BIN/loadgen" --target "http://127.0.0.1:$DEMO_PORT" --rps "$LOADGEN_RPS" \
        --duration "$LOADGEN_DURATION" --pattern "$LOADGEN_PATTERN" --day "$LOADGEN_DAY"
    wait_http prometheus "http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
    owns_port prometheus "$PROMETHEUS_PORT"
    wait_http alertmanager "http://127.0.0.1:$ALERTMANAGER_PORT/-/ready"
    owns_port alertmanager "$ALERTMANAGER_PORT"
    echo
    status
    guide
}

status() {
    local rows=(
        "prometheus|http://127.0.0.1:$PROMETHEUS_PORT|http://127.0.0.1:$PROMETHEUS_PORT/-/ready"
        "alertmanager|http://127.0.0.1:$ALERTMANAGER_PORT|http://127.0.0.1:$ALERTMANAGER_PORT/-/ready"
        "webhook-sink|http://127.0.0.1:$WEBHOOK_PORT (deliveries in $SHOWN/webhook.jsonl)|http://127.0.0.1:$WEBHOOK_PORT/"
        "otel-collector|OTLP grpc 127.0.0.1:$OTLP_GRPC_PORT, http 127.0.0.1:$OTLP_HTTP_PORT; metrics :$PROM_EXPORTER_PORT, own :$COLLECTOR_METRICS_PORT, health :$HEALTH_PORT|http://127.0.0.1:$HEALTH_PORT/"
        "demo-app|http://127.0.0.1:$DEMO_PORT (inventory :$DEMO_INVENTORY_PORT, payment :$DEMO_PAYMENT_PORT)|http://127.0.0.1:$DEMO_PORT/health"
        "node-agent|pushes OTLP to 127.0.0.1:$OTLP_GRPC_PORT|"
        "anomaly-detector|http://127.0.0.1:$DETECTOR_PORT/ (live view), /api/v1/services, /api/v1/anomalies|http://127.0.0.1:$DETECTOR_PORT/health"
        "loadgen|$LOADGEN_RPS req/s diurnal against the demo-app|"
    )
    printf '%-17s %-8s %-7s %s\n' SERVICE PID HEALTH WHERE
    local row name where probe pid health down=0
    for row in "${rows[@]}"; do
        IFS='|' read -r name where probe <<<"$row"
        pid=$(pid_of "$name" || true)
        if [[ -z $pid ]]; then health=down
        elif [[ -z $probe ]]; then health=running
        elif curl -fsS -o /dev/null --max-time 2 "$probe" 2>/dev/null; then health=ok
        else health=failing; fi
        [[ $health == down || $health == failing ]] && down=$((down + 1))
        printf '%-17s %-8s %-7s %s\n' "$name" "${pid:--}" "$health" "$where"
    done
    echo "logs: $SHOWN/<service>.log   traces (file exporter): $SHOWN/traces.jsonl   stop: make down"
    # `make status` fails when a service is down or does not answer its health probe.
    if ((down > 0)); then echo "$down service(s) down or failing: see $SHOWN/<service>.log" >&2; return 1; fi
}

# urlencode TEXT: TEXT percent-encoded for a query string.
urlencode() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# guide: where to look once the stack runs, and how to play the demo scenarios (scripts/).
guide() {
    local prom="http://127.0.0.1:$PROMETHEUS_PORT"
    local red='sum by (job) (rate(http_server_request_duration_seconds_count[1m]))'
    echo
    echo "Prometheus alerts:  $prom/alerts"
    echo "RED graph (rate):   $prom/graph?g0.expr=$(urlencode "$red")&g0.tab=0&g0.range_input=30m"
    echo "Alertmanager:       http://127.0.0.1:$ALERTMANAGER_PORT/#/alerts"
    echo "Webhook deliveries: $SHOWN/webhook.jsonl (Alertmanager: /alerts/page|ticket|default; detector: /detector, signed)"
    echo "                    or GET http://127.0.0.1:$WEBHOOK_PORT/ (last 50)"
    echo "Scenarios (each prints what to expect and where to look):"
    echo "  scripts/traffic.sh [RPS] [DURATION]       more load (loadgen)"
    echo "  scripts/errors.sh [RATE] [SECONDS]        5xx spike -> SLO fast-burn page"
    echo "  scripts/latency.sh [MS] [SECONDS]         slow responses -> latency SLO / p95 alerts"
    echo "  scripts/anomaly.sh [MS] [SECONDS]         latency anomaly -> detector webhook (after warm-up)"
}

down() {
    local name pid
    for name in $(printf '%s\n' "${SERVICES[@]}" | tac); do
        pid=$(pid_of "$name" || true)
        [[ -z $pid ]] && { rm -f "$RUN/$name.pid"; continue; }
        kill -TERM "$pid" 2>/dev/null || true
        # The collector may spend its whole drain deadline (10 s) retrying an absent Tempo.
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; log "$name killed after 20 s"; else log "stopped $name"; fi
        rm -f "$RUN/$name.pid"
    done
}

case "${1:-}" in
    up) up ;;
    status) status ;;
    down) down ;;
    *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
