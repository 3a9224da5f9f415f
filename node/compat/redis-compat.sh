#!/usr/bin/env bash
# `make redis-compat`: runs units of Redis's own test suite (external-server mode) against
# redis-server and a standalone ringshift node (whole ring) in the same run and prints per unit
# the tests each passed and the ratio. A measurement, not a gate: exits 0 whatever the numbers.
#
# The Redis source comes from Debian (`apt-get source redis`, same version as the machine's
# redis-server), cached outside the repo in $RINGSHIFT_CACHE/redis-src (default
# ~/.cache/ringshift). Needs a deb-src entry: derived from the machine's own Debian entry by
# e2e/cluster/deb-src.sh. Knobs: UNITS="string incr ...", UNIT_TIMEOUT=seconds (per unit
# and server), FAILING_OUT=file (default node/compat/failing-tests.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE="${RINGSHIFT_CACHE:-$HOME/.cache/ringshift}"
SRC_CACHE="$CACHE/redis-src"
log() { echo "[redis-compat] $*" >&2; }

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

need_pkgs=()
command -v tclsh >/dev/null || need_pkgs+=(tcl)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v dpkg-source >/dev/null || need_pkgs+=(dpkg-dev)
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# The unpacked source of the same upstream version as the installed redis-server.
version=$(redis-server --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')
src="$SRC_CACHE/redis-$version"
if [[ ! -x $src/runtest ]]; then
  # shellcheck source=e2e/cluster/deb-src.sh
  source "$ROOT/e2e/cluster/deb-src.sh"
  ensure_deb_src
  mkdir -p "$SRC_CACHE"
  log "fetching the redis $version source package into $SRC_CACHE"
  (cd "$SRC_CACHE" && apt-get source redis >/dev/null)
  [[ -x $src/runtest ]] || { log "no $src/runtest after apt-get source redis"; exit 1; }
fi

log "building ringshift-node"
(cd "$ROOT" && cargo build -q -p ringshift-node --bins)
cd "$ROOT"
exec target/debug/ringshift-redis-compat --redis-src "$src" \
  --units "${UNITS:-string incr keyspace expire hash list set zset multi pubsub scan}" \
  --unit-timeout "${UNIT_TIMEOUT:-300}" --work-dir "$ROOT/target/redis-compat" \
  --failing-out "${FAILING_OUT:-$ROOT/node/compat/failing-tests.txt}"
