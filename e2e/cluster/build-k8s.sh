#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager and etcd of one Kubernetes release as ordinary
# Go module programs: e2e/cluster/k8s-build/<version>/ is a small module that requires
# k8s.io/kubernetes at that release and pins every k8s.io staging module to the matching v0.x
# release (k8s.io/kubernetes's own go.mod requires them at v0.0.0). etcd is the version that
# release's module graph selects (go.etcd.io/etcd/server/v3).
#
# Usage: build-k8s.sh [VERSION]   (default: $RINGSHIFT_K8S_VERSION, else the newest supported)
# Binaries go to $RINGSHIFT_CACHE/k8s-v<version>/ (default ~/.cache/ringshift). Idempotent: exits
# at once when they are there. Modules come through the machine's configured Go module proxy
# (go env GOPROXY); the module and build caches persist under the same cache dir, so a rebuild
# after a cache wipe of only the binaries takes seconds.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=e2e/cluster/versions.sh
source "$HERE/versions.sh"
VERSION="${1:-${RINGSHIFT_K8S_VERSION:-$K8S_NEWEST}}"
CACHE="${RINGSHIFT_CACHE:-$HOME/.cache/ringshift}"
OUT="$CACHE/k8s-v$VERSION"
MOD="$HERE/k8s-build/$VERSION"
BINS=(kube-apiserver kube-controller-manager etcd)
log() { echo "[build-k8s] $*" >&2; }

is_cached() {
  local b
  for b in "${BINS[@]}"; do [[ -x "$OUT/$b" ]] || return 1; done
}
if is_cached; then
  log "cached: $OUT"
  exit 0
fi
# One build per release at a time (several checkouts share the cache): wait for another one to
# finish, then use what it built.
mkdir -p "$CACHE"
exec 9>"$OUT.lock"
if ! flock -n 9; then
  log "another build of $VERSION is running; waiting for it"
  flock 9
fi
if is_cached; then
  log "cached: $OUT"
  exit 0
fi
if [[ ! -f "$MOD/go.mod" ]]; then
  log "no build module for Kubernetes $VERSION (supported: ${K8S_SUPPORTED[*]}; see $HERE/k8s-build/)"
  exit 1
fi

# The machine's Go (/usr/local/go first on PATH); the modules' go.mod lines need Go >= 1.26.
if [[ -x /usr/local/go/bin/go ]]; then PATH="/usr/local/go/bin:$PATH"; fi
command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
gov="$(go env GOVERSION)"
case "$gov" in
  go1.2[6-9]* | go1.[3-9][0-9]*) ;;
  *) log "need Go >= 1.26, found $gov"; exit 1 ;;
esac

export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
mkdir -p "$GOMODCACHE" "$GOCACHE"

major="${VERSION%%.*}"
minor="${VERSION#*.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=v$VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

log "building Kubernetes $VERSION with $gov (cold: about 20 minutes on 2 cores; seconds with a warm Go build cache)"
start=$SECONDS
rm -rf "$OUT.tmp"
mkdir -p "$OUT.tmp"
(cd "$MOD" && go build -trimpath -ldflags "$ldflags" -o "$OUT.tmp/" ./cmd/...) || {
  log "build failed"
  exit 1
}
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
log "built $OUT in $((SECONDS - start)) s"
