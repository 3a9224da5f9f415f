#!/usr/bin/env bash
# Builds ringshift-kubelet-api (this directory's Go module: the kubelet API server of the process
# kubelet) once per source version into $RINGSHIFT_CACHE/kubelet-api/ (default
# ~/.cache/ringshift), as e2e/images/build-tool.sh builds ringshift-oci: the machine's Go,
# GOTOOLCHAIN=local, -mod=readonly, module and build caches under the same cache dir. Prints the
# binary's path. `build.sh test` runs go vet and the module's unit tests instead (make unit).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${RINGSHIFT_CACHE:-$HOME/.cache/ringshift}"
log() { echo "[kubelet-api] $*" >&2; }

if [[ -x /usr/local/go/bin/go ]]; then PATH="/usr/local/go/bin:$PATH"; fi
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

if [[ ${1:-} == test ]]; then
  cd "$HERE" && go vet ./... && go test ./...
  exit
fi

# The cached binary is named by a hash of the module's sources: editing them rebuilds it.
sum=$(cd "$HERE" && find go.mod go.sum cmd -type f ! -name '*_test.go' -print0 | sort -z |
  xargs -0 sha256sum | sha256sum | cut -c1-16)
OUT="$CACHE/kubelet-api/ringshift-kubelet-api-$sum"
if [[ -x $OUT ]]; then echo "$OUT"; exit 0; fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
mkdir -p "$CACHE/kubelet-api" "$GOMODCACHE" "$GOCACHE"
exec 9>"$CACHE/kubelet-api/build.lock"
flock 9
if [[ -x $OUT ]]; then echo "$OUT"; exit 0; fi
log "building with $(go env GOVERSION)"
start=$SECONDS
(cd "$HERE" && go build -trimpath -ldflags "-s -w" -o "$OUT.tmp" ./cmd/ringshift-kubelet-api)
mv "$OUT.tmp" "$OUT"
log "built $OUT in $((SECONDS - start)) s"
echo "$OUT"
