#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager v1.20.2 from Debian's source package
# (with the reflect2/json-iterator fix from LOCAL-K8S.md) into a cache outside the repo.
# Idempotent: exits at once when the cached binaries are there.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE="${RINGSHIFT_CACHE:-$HOME/.cache/ringshift}"
OUT="$CACHE/k8s-v$K8S_VERSION"
log() { echo "[build-k8s] $*" >&2; }

if [[ -x "$OUT/kube-apiserver" && -x "$OUT/kube-controller-manager" ]]; then
  log "cached: $OUT"
  exit 0
fi

SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO=sudo

need_pkgs=()
for p in golang-go rsync jq make golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev dpkg-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
# Debian's source packages need a deb-src entry, derived from the machine's own apt sources.
# shellcheck source=e2e/cluster/deb-src.sh
source "$(dirname "$0")/deb-src.sh"
ensure_deb_src
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

WORK="$CACHE/k8s-build"
mkdir -p "$WORK"
cd "$WORK"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  log "fetching Debian source package"
  apt-get source --download-only kubernetes >/dev/null
fi
SRC="$WORK/src"
if [[ ! -d $SRC/cmd/kube-apiserver ]]; then
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar -xzf kubernetes_*.orig.tar.gz -C "$SRC" --strip-components=1
fi

# The vendored reflect2 v1.0.1 crashes under Go >= 1.18; use Debian's fixed sources.
for pair in "github.com/modern-go/reflect2" "github.com/json-iterator/go"; do
  rm -rf "$SRC/vendor/$pair"
  mkdir -p "$SRC/vendor/$pair"
  cp -r "/usr/share/gocode/src/$pair/." "$SRC/vendor/$pair/"
  find "$SRC/vendor/$pair" -name '*_test.go' -delete
  rm -f "$SRC/vendor/$pair/go.mod" "$SRC/vendor/$pair/go.sum"
done

mkdir -p "$SRC/.go/src/k8s.io"
ln -sfn "$SRC" "$SRC/.go/src/k8s.io/kubernetes"
# Kubernetes 1.20 builds with Debian's Go 1.19; a newer Go first on PATH (/usr/local/go) does not
# build it, so Debian's comes first for this build only.
GO119=/usr/lib/go-1.19/bin
[[ -x $GO119/go ]] || { log "Debian's Go 1.19 is missing at $GO119 (apt-get install golang-go)"; exit 1; }
log "building with $("$GO119/go" version) (about 6 minutes on 2 cores)"
(cd "$SRC" && PATH="$GO119:$PATH" GOPATH="$SRC/.go" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS= \
   make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$WORK/build.log" 2>&1) || {
  tail -40 "$WORK/build.log" >&2; exit 1; }
mkdir -p "$OUT.tmp"
cp "$SRC/_output/local/bin/linux/amd64/kube-apiserver" "$SRC/_output/local/bin/linux/amd64/kube-controller-manager" "$OUT.tmp/"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
rm -rf "$SRC"
log "built: $OUT"
