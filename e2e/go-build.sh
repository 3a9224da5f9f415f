#!/usr/bin/env bash
# go-build.sh MODULE_DIR PROGRAM [test]: builds one of the repository's Go module programs
# (./cmd/PROGRAM of MODULE_DIR) once per source version into $RINGSHIFT_CACHE/PROGRAM/ (default
# ~/.cache/ringshift) and prints the binary's path, the way cluster/build-k8s.sh builds
# Kubernetes: the machine's Go, GOTOOLCHAIN=local, -mod=readonly, module and build caches under
# the same cache dir. With `test` it runs go vet and the module's unit tests instead (make unit).
set -euo pipefail
MOD="$(cd "$1" && pwd)"
PROG="$2"
CACHE="${RINGSHIFT_CACHE:-$HOME/.cache/ringshift}"
log() { echo "[$PROG] $*" >&2; }

if [[ -x /usr/local/go/bin/go ]]; then PATH="/usr/local/go/bin:$PATH"; fi
export GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

if [[ ${3:-} == test ]]; then
  cd "$MOD" && go vet ./... && go test ./...
  exit
fi

# The cached binary is named by a hash of the module's sources: editing them rebuilds it.
sum=$(cd "$MOD" && find go.mod go.sum cmd -type f ! -name '*_test.go' -print0 | sort -z |
  xargs -0 sha256sum | sha256sum | cut -c1-16)
OUT="$CACHE/$PROG/$PROG-$sum"
if [[ -x $OUT ]]; then echo "$OUT"; exit 0; fi

command -v go >/dev/null || { log "go is not on PATH"; exit 1; }
mkdir -p "$CACHE/$PROG" "$GOMODCACHE" "$GOCACHE"
exec 9>"$CACHE/$PROG/build.lock"
flock 9
if [[ -x $OUT ]]; then echo "$OUT"; exit 0; fi
log "building with $(go env GOVERSION)"
start=$SECONDS
(cd "$MOD" && go build -trimpath -ldflags "-s -w" -o "$OUT.tmp" "./cmd/$PROG")
mv "$OUT.tmp" "$OUT"
log "built $OUT in $((SECONDS - start)) s"
echo "$OUT"
