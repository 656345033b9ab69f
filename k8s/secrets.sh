#!/usr/bin/env bash
# Writes k8s/overlays/ENV/secrets.env, the source of the Secret otel-pipeline-secrets that the
# overlay's secretGenerator builds (git-ignored: values are never committed).
#
#   k8s/secrets.sh dev|prod [--force]
#
# Random values for the detector's webhook HMAC secret and Grafana's admin password (unless
# DETECTOR_WEBHOOK_SECRET / GRAFANA_ADMIN_PASSWORD are set). The webhook URLs come from
# ALERT_PAGE_WEBHOOK_URL, ALERT_TICKET_WEBHOOK_URL, ALERT_DEFAULT_WEBHOOK_URL and
# DETECTOR_WEBHOOK_URL; dev falls back to the webhook-sink names of the local stack, prod
# refuses to run without them. An existing file is kept unless --force is given.
set -euo pipefail
cd "$(dirname "$0")"
env=${1:-}
[[ $env == dev || $env == prod ]] || { echo "usage: $0 dev|prod [--force]" >&2; exit 2; }
out=overlays/$env/secrets.env
if [[ -f $out && ${2:-} != --force ]]; then
    echo "$out exists (kept; --force replaces it)"
    exit 0
fi
random() { openssl rand -hex 24; }
url() {
    local var=$1 fallback=$2 value
    value=${!var:-}
    if [[ -z $value ]]; then
        [[ $env == dev ]] || { echo "error: $var must be set for prod (the receiver's URL)" >&2; exit 1; }
        value=$fallback
    fi
    printf '%s' "$value"
}
detector_url=$(url DETECTOR_WEBHOOK_URL http://webhook-sink:9095/detector)
page_url=$(url ALERT_PAGE_WEBHOOK_URL http://webhook-sink:9095/alerts/page)
ticket_url=$(url ALERT_TICKET_WEBHOOK_URL http://webhook-sink:9095/alerts/ticket)
default_url=$(url ALERT_DEFAULT_WEBHOOK_URL http://webhook-sink:9095/alerts/default)
umask 077
{
    echo "detector-webhook-secret=${DETECTOR_WEBHOOK_SECRET:-$(random)}"
    echo "detector-webhook-url=$detector_url"
    echo "grafana-admin-password=${GRAFANA_ADMIN_PASSWORD:-$(random)}"
    echo "alert-page-webhook-url=$page_url"
    echo "alert-ticket-webhook-url=$ticket_url"
    echo "alert-default-webhook-url=$default_url"
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out"
