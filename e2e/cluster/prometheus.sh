#!/usr/bin/env bash
# Debian's prometheus beside the local control plane (apt-get install prometheus):
#   prometheus.sh start | stop | url
# It discovers every ringshift shard pod through the local apiserver (kubernetes_sd with the
# harness kubeconfig; pods run on their own addresses, so podIP:admin is scrapeable) and labels
# them as the chart's PodMonitor does (namespace, pod, cluster, member, ringshift_role="node").
# Operator processes started by tests are listed in $STATE/prometheus/operators/*.json
# (file_sd, written by the test). It evaluates deploy/prometheus/ringshift.rules.yaml every 2 s
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
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: $STATE/kubeconfig
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]
        regex: ringshift-node
        action: keep
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: admin
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: member
      - source_labels: [__meta_kubernetes_pod_label_ringshift_dev_cluster]
        target_label: cluster
      - target_label: ringshift_role
        replacement: node
YAML
}

case "${1:-}" in
  start)
    command -v prometheus >/dev/null || die "prometheus not found: apt-get install prometheus"
    [[ -f $STATE/kubeconfig ]] || die "no local cluster at $STATE (make cluster-up)"
    mkdir -p "$PROM_DIR/operators" "$PROM_DIR/data"
    config >"$PROM_DIR/prometheus.yml"
    start_daemon prometheus prometheus --config.file="$PROM_DIR/prometheus.yml" \
      --storage.tsdb.path="$PROM_DIR/data" --storage.tsdb.retention.time=1d \
      --web.listen-address="127.0.0.1:$PROM_PORT" --web.enable-lifecycle
    wait_until 60 "prometheus ready" curl -sf "$URL/-/ready"
    echo "$URL"
    ;;
  stop)
    stop_pidfile "$STATE/pids/prometheus.pid"
    ;;
  url)
    echo "$URL"
    ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
