#!/usr/bin/env bash
# End-to-end on a real Kubernetes (kind): install the chart, apply the sample `emails` JobQueue,
# enqueue a burst, and check that the operator scales the workers up, the queue drains, and the
# workers scale back to zero. Needs Docker, kind, kubectl and helm; see docs/kind-e2e.md.
#
# Environment:
#   KIND_CLUSTER      cluster name (default jobqueue-e2e); an existing cluster of that name is reused
#   KIND_NODE_IMAGE   kindest/node image to pin the Kubernetes version (default: kind's own)
#   KEEP_CLUSTER=1    keep the cluster afterwards (default: delete it, also on failure)
#   BURST             jobs to enqueue (default 3000)
#   TIMEOUT           seconds each wait may take (default 300)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
CLUSTER="${KIND_CLUSTER:-jobqueue-e2e}"
BURST="${BURST:-3000}"
TIMEOUT="${TIMEOUT:-300}"
VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$ROOT/charts/jobqueue-operator/Chart.yaml")"
OPERATOR_IMAGE="jobqueue/operator:$VERSION"
RUNTIME_IMAGE="jobqueue/worker-runtime:$VERSION"
WORKER_IMAGE="jobqueue/example-worker:$VERSION"
REDIS_URL="redis://redis.default.svc.cluster.local:6379/0"
OPERATOR_NS="jobqueue-system"
KUBECTL=(kubectl --context "kind-$CLUSTER")

log() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

check_tools() {
  local missing=()
  for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "missing on PATH: ${missing[*]} (needs docker, kind, kubectl and helm; see docs/kind-e2e.md)" >&2
    exit 2
  fi
  if ! docker info >/dev/null 2>&1; then
    echo "docker is installed but no Docker engine answers (is the daemon running? can this user reach it?)" >&2
    exit 2
  fi
}

diagnose() {
  log "diagnostics"
  "${KUBECTL[@]}" get jobqueues,deployments,pods -A -o wide || true
  "${KUBECTL[@]}" describe jobqueue emails -n default || true
  "${KUBECTL[@]}" get events -A --sort-by=.lastTimestamp | tail -40 || true
  "${KUBECTL[@]}" logs -n "$OPERATOR_NS" deployment/jobqueue-operator --tail=200 || true
}

CREATED=""
cleanup() {
  local status=$?
  if ((status != 0)) && [[ -n "$CREATED$(kind get clusters 2>/dev/null | grep -x "$CLUSTER" || true)" ]]; then
    diagnose
  fi
  if [[ "${KEEP_CLUSTER:-0}" == "1" ]]; then
    log "keeping cluster $CLUSTER (kind delete cluster --name $CLUSTER)"
  elif [[ -n "$CREATED" ]]; then
    log "deleting cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" || true
  fi
  exit "$status"
}

jobqueue_field() {
  "${KUBECTL[@]}" get jobqueue emails -n default -o "jsonpath={.status.$1}"
}

wait_for_field() {  # wait_for_field FIELD VALUE: status.FIELD of the `emails` JobQueue reaches VALUE
  log "waiting for status.$1 = $2"
  "${KUBECTL[@]}" wait jobqueue/emails -n default --for="jsonpath={.status.$1}=$2" --timeout="${TIMEOUT}s" \
    || fail "status.$1 never reached $2 (it is '$(jobqueue_field "$1")')"
}

check_tools
trap cleanup EXIT

if kind get clusters | grep -qx "$CLUSTER"; then
  log "reusing cluster $CLUSTER"
else
  log "creating cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --config "$HERE/kind-config.yaml" --wait 180s \
    ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
  CREATED=1
fi

log "building images"
docker build -f "$ROOT/operator/Dockerfile" -t "$OPERATOR_IMAGE" "$ROOT"
docker build -f "$ROOT/worker_runtime/Dockerfile" -t "$RUNTIME_IMAGE" "$ROOT"
docker build -t "$WORKER_IMAGE" "$ROOT/examples/worker"
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$WORKER_IMAGE"

log "starting Redis"
"${KUBECTL[@]}" apply -f "$HERE/redis.yaml"
"${KUBECTL[@]}" rollout status deployment/redis -n default --timeout="${TIMEOUT}s"

log "installing the chart"
helm --kube-context "kind-$CLUSTER" upgrade --install jobqueue "$ROOT/charts/jobqueue-operator" \
  --namespace "$OPERATOR_NS" --create-namespace \
  --set fullnameOverride=jobqueue-operator \
  --set image.tag="$VERSION" --set image.pullPolicy=Never \
  --wait --timeout "${TIMEOUT}s"
"${KUBECTL[@]}" get crd jobqueues.jobqueue.dev >/dev/null || fail "the chart did not install the JobQueue CRD"

log "applying the emails JobQueue"
"${KUBECTL[@]}" apply -n default -f "$ROOT/examples/jobqueue.yaml"
"${KUBECTL[@]}" patch jobqueue emails -n default --type merge --patch-file "$HERE/scale-overrides.yaml"
wait_for_field observedGeneration "$("${KUBECTL[@]}" get jobqueue emails -n default -o 'jsonpath={.metadata.generation}')"
wait_for_field replicas 0

log "enqueueing $BURST jobs"
"${KUBECTL[@]}" delete pod jq-enqueue -n default --ignore-not-found
"${KUBECTL[@]}" run jq-enqueue -n default --image="$WORKER_IMAGE" --image-pull-policy=Never --restart=Never \
  --env="JOBQUEUE_REDIS_URL=$REDIS_URL" --command -- \
  jobqueue enqueue emails send_email '{"to": "ada@example.com", "subject": "kind e2e"}' --count "$BURST"
"${KUBECTL[@]}" wait pod/jq-enqueue -n default --for=jsonpath='{.status.phase}'=Succeeded --timeout="${TIMEOUT}s" \
  || { "${KUBECTL[@]}" logs pod/jq-enqueue -n default || true; fail "enqueueing failed"; }
"${KUBECTL[@]}" delete pod jq-enqueue -n default

log "scale-up"
wait_for_field desiredReplicas 4
wait_for_field replicas 4
WORKERS="$("${KUBECTL[@]}" get deployments -n default \
  -o 'jsonpath={range .items[?(@.metadata.ownerReferences[0].kind=="JobQueue")]}{.metadata.name}{"\n"}{end}')"
[[ -n "$WORKERS" ]] || fail "no worker Deployment owned by the JobQueue"
"${KUBECTL[@]}" rollout status "deployment/$WORKERS" -n default --timeout="${TIMEOUT}s"

log "drain"
wait_for_field waiting 0
wait_for_field active 0
[[ "$(jobqueue_field dead)" =~ ^0?$ ]] || fail "jobs were dead-lettered: status.dead=$(jobqueue_field dead)"

log "scale-down to zero"
wait_for_field desiredReplicas 0
wait_for_field replicas 0

log "deleting the JobQueue"
"${KUBECTL[@]}" delete jobqueue emails -n default --wait --timeout="${TIMEOUT}s"
"${KUBECTL[@]}" wait "deployment/$WORKERS" -n default --for=delete --timeout="${TIMEOUT}s" \
  || fail "the worker Deployment outlived its JobQueue"

log "uninstalling the chart"
helm --kube-context "kind-$CLUSTER" uninstall jobqueue --namespace "$OPERATOR_NS" --wait --timeout "${TIMEOUT}s"

log "PASSED: scale-up to 4, drain of $BURST jobs without dead letters, scale-down to 0, clean deletion"
