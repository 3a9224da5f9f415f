# Shared settings and process helpers for e2e/cluster/{up,down,logs}. Sourced, not run.
# shellcheck shell=bash

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"
# shellcheck source=e2e/cluster/versions.sh
source "$CLUSTER_DIR/versions.sh"
# RINGSHIFT_K8S_VERSION selects the Kubernetes release (one of K8S_SUPPORTED; default the newest).
K8S_VERSION="${RINGSHIFT_K8S_VERSION:-$K8S_NEWEST}"
CACHE="${RINGSHIFT_CACHE:-$HOME/.cache/ringshift}"
K8S_BIN="$CACHE/k8s-v$K8S_VERSION"
# Several clusters can run side by side on one machine (e.g. one per checkout): cluster N (0-9,
# RINGSHIFT_CLUSTER, default 0) gets its own ports, pod addresses 127.(16N+8)-127.(16N+15).x.y and
# state dir. Cluster 0 uses the standard ports (apiserver 6443, etcd 2379/2380).
CLUSTER_INDEX="${RINGSHIFT_CLUSTER:-0}"
[[ $CLUSTER_INDEX =~ ^[0-9]$ ]] || { echo "[cluster] RINGSHIFT_CLUSTER must be 0-9" >&2; exit 1; }
if ((CLUSTER_INDEX == 0)); then DEFAULT_STATE=/tmp/ringshift-k8s; else DEFAULT_STATE=/tmp/ringshift-k8s-$CLUSTER_INDEX; fi
STATE="${RINGSHIFT_STATE:-$DEFAULT_STATE}"
BIN_DIR="${RINGSHIFT_BIN_DIR:-$REPO_ROOT/target/debug}"
API_PORT=$((6443 + CLUSTER_INDEX))
ETCD_PORT=$((2379 + 10 * CLUSTER_INDEX))
ETCD_PEER_PORT=$((2380 + 10 * CLUSTER_INDEX))
KCM_PORT=$((10257 + CLUSTER_INDEX))
# The kubelet API (logs, exec, attach, port-forward; e2e/kubelet-api), HTTPS on loopback.
KUBELET_PORT=$((10240 + CLUSTER_INDEX))
# The cluster's OCI registry (e2e/images): node and operator images are pushed there and pulled
# by the process kubelet; tests install the chart with image.registry=$REGISTRY.
REGISTRY_PORT=$((15000 + CLUSTER_INDEX))
REGISTRY="127.0.0.1:$REGISTRY_PORT"
# The pod network (see e2e/src/kubelet/net_plan.rs): bridge rsbrN owns 127.(16N+8).0.1/13, each pod
# has its own network namespace rsN-<pod uid>; Services take 127.(16N+15).0.0/16, local on the host.
BRIDGE="rsbr$CLUSTER_INDEX"
NETNS_PREFIX="rs$CLUSTER_INDEX-"
SERVICE_CIDR="127.$((16 * CLUSTER_INDEX + 15)).0.0/16"
NODE_NAME=local

log() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] error: $*" >&2; exit 1; }

# Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat); together with
# the pid it identifies one process even after the pid is reused.
proc_start() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }          # drop "pid (comm) ", comm may contain spaces
  # shellcheck disable=SC2086
  set -- $stat
  echo "${20}"
}

# pid_alive FILE: the process recorded in FILE ("PID STARTTIME") still runs.
pid_alive() {
  local pid start now
  [[ -f $1 ]] || return 1
  read -r pid start <"$1" || return 1
  now=$(proc_start "$pid") || return 1
  [[ $now == "$start" ]]
}

# start_daemon NAME CMD...: run CMD in its own session, output to logs/NAME.log, pid to pids/NAME.pid.
start_daemon() {
  local name=$1; shift
  local pidf="$STATE/pids/$name.pid"
  if pid_alive "$pidf"; then log "$name already running (pid $(cut -d' ' -f1 "$pidf"))"; return 0; fi
  mkdir -p "$STATE/pids" "$STATE/logs"
  setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
  local pid=$!
  local start=""
  for _ in 1 2 3 4 5; do start=$(proc_start "$pid") && break; sleep 0.1; done
  [[ -n $start ]] || die "$name exited at once; see $STATE/logs/$name.log"
  echo "$pid $start" >"$pidf"
  log "started $name (pid $pid, log $STATE/logs/$name.log)"
}

# stop_pidfile FILE [GRACE]: SIGTERM the process group recorded in FILE, SIGKILL after GRACE seconds.
stop_pidfile() {
  local f=$1 grace=${2:-10} pid start
  if pid_alive "$f"; then
    read -r pid start <"$f"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do pid_alive "$f" || break; sleep 0.1; done
    if pid_alive "$f"; then
      log "$(basename "$f" .pid) ignored SIGTERM; killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$f"
}

# wait_until SECONDS WHAT CMD...: retry CMD every half second.
wait_until() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for $what"
    sleep 0.5
  done
}

# remove_pod_network: every pod namespace of this cluster, its bridge and the Service route.
remove_pod_network() {
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    if [[ $ns == "$NETNS_PREFIX"* ]]; then ip netns del "$ns" || log "could not remove netns $ns"; fi
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  ip route del table local local "$SERVICE_CIDR" dev lo 2>/dev/null || true
}

kc() { kubectl --kubeconfig "$STATE/kubeconfig" "$@"; }
