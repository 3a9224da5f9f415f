#!/usr/bin/env bash
# Debian's prometheus beside the local control plane (apt-get install prometheus):
#   prometheus.sh start | stop | url
# Debian builds prometheus without Kubernetes service discovery, so a companion loop
# (prometheus-sd) lists the shard pods every 2 s into $STATE/prometheus/nodes.json (file_sd;
# pods run on their own addresses, so podIP:admin is scrapeable), labelled as the chart's
# PodMonitor labels them: namespace, pod, cluster, member, ringshift_role="node". Operator
# processes started by tests are listed in $STATE/prometheus/operators/*.json (by the test);
# operator pods of the chart (the demo) by the same loop. It evaluates deploy/prometheus/ringshift.rules.yaml every 2 s
# and listens on 127.0.0.1:(19090 + RINGSHIFT_CLUSTER).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

PROM_PORT=$((19090 + CLUSTER_INDEX))
PROM_DIR="$STATE/prometheus"
URL="http://127.0.0.1:$PROM_PORT"

config() {
  cat <<YAML
global:
  scrape_interval: 2s
  scrape_timeout: 1500ms
  evaluation_interval: 2s
rule_files:
  - $REPO_ROOT/deploy/prometheus/ringshift.rules.yaml
scrape_configs:
  - job_name: ringshift-operator
    honor_labels: true
    file_sd_configs:
      - files: ["$PROM_DIR/operators/*.json"]
        refresh_interval: 2s
  - job_name: ringshift-nodes
    file_sd_configs:
      - files: ["$PROM_DIR/nodes.json"]
        refresh_interval: 2s
YAML
}

# One file_sd list of the shard pods that have an address, written atomically.
list_nodes() {
  kc get pods --all-namespaces -l app.kubernetes.io/name=ringshift-node -o json | jq '[
    .items[] | select((.status.podIP // "") != "") | {
      targets: [.status.podIP + ":" + ([.spec.containers[].ports[]? | select(.name == "admin")
                                        | .containerPort][0] | tostring)],
      labels: {namespace: .metadata.namespace, pod: .metadata.name, member: .metadata.name,
               cluster: (.metadata.labels["ringshift.dev/cluster"] // ""),
               ringshift_role: "node"}}]' >"$PROM_DIR/nodes.json.tmp" &&
    mv "$PROM_DIR/nodes.json.tmp" "$PROM_DIR/nodes.json"
  # Operators the chart runs as pods (the demo), on their `metrics` port.
  kc get pods --all-namespaces -l app.kubernetes.io/component=operator -o json | jq '[
    .items[] | select((.status.podIP // "") != "") | {
      targets: [.status.podIP + ":" + ([.spec.containers[].ports[]? | select(.name == "metrics")
                                        | .containerPort][0] | tostring)],
      labels: {pod: .metadata.name}}]' >"$PROM_DIR/operators/chart-pods.json.tmp" &&
    mv "$PROM_DIR/operators/chart-pods.json.tmp" "$PROM_DIR/operators/chart-pods.json"
}

case "${1:-}" in
  start)
    command -v prometheus >/dev/null || die "prometheus not found: apt-get install prometheus"
    [[ -f $STATE/kubeconfig ]] || die "no local cluster at $STATE (make cluster-up)"
    command -v jq >/dev/null || die "jq not found: apt-get install jq"
    mkdir -p "$PROM_DIR/operators" "$PROM_DIR/data"
    config >"$PROM_DIR/prometheus.yml"
    list_nodes || { echo "[]" >"$PROM_DIR/nodes.json"; echo "[]" >"$PROM_DIR/operators/chart-pods.json"; }
    start_daemon prometheus-sd "$0" sd-loop
    start_daemon prometheus prometheus --config.file="$PROM_DIR/prometheus.yml" \
      --storage.tsdb.path="$PROM_DIR/data" --storage.tsdb.retention.time=1d \
      --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle
    wait_until 60 "prometheus ready" curl -sf "$URL/-/ready"
    echo "$URL"
    ;;
  stop)
    stop_pidfile "$STATE/pids/prometheus-sd.pid" 2
    stop_pidfile "$STATE/pids/prometheus.pid"
    ;;
  sd-loop)
    while true; do
      list_nodes || true
      sleep 2
    done
    ;;
  url)
    echo "$URL"
    ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
