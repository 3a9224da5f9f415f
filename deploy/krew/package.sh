#!/usr/bin/env bash
# Packages `kubectl ringshift` for krew: a release build of the plugin in a tar.gz (with the
# README section that documents it) and the krew Plugin manifest that points at it, with the
# archive's sha256. `make krew URI_BASE=<the address you will publish the archive under>`;
# writes target/krew/. The manifest is generated, never committed: its sha256 and URI belong to
# one published archive. BIN=path skips the release build (the test uses a debug binary).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT="${OUT:-$ROOT/target/krew}"
URI_BASE="${URI_BASE:?URI_BASE=<where the archive will be published> is required}"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
ARCH=$(uname -m)
case "$ARCH" in x86_64) ARCH=amd64 ;; aarch64) ARCH=arm64 ;; esac

if [[ -z "${BIN:-}" ]]; then
  (cd "$ROOT" && cargo build -q --release -p ringshift-operator --bin kubectl-ringshift)
  BIN="$ROOT/target/release/kubectl-ringshift"
fi
[[ -x "$BIN" ]] || { echo "no plugin binary at $BIN" >&2; exit 1; }

mkdir -p "$OUT/stage"
rm -rf "${OUT:?}/stage/"*
cp "$BIN" "$OUT/stage/kubectl-ringshift"
strip "$OUT/stage/kubectl-ringshift" 2>/dev/null || true
# The plugin's part of the operator README travels with it.
sed -n '/^## kubectl ringshift/,/^## [^k]/p' "$ROOT/operator/README.md" | sed '$d' > "$OUT/stage/README.md"
[[ -s "$OUT/stage/README.md" ]] || cp "$ROOT/operator/README.md" "$OUT/stage/README.md"
archive="kubectl-ringshift_v${VERSION}_linux_${ARCH}.tar.gz"
tar -C "$OUT/stage" --owner=0 --group=0 -czf "$OUT/$archive" kubectl-ringshift README.md
sha=$(sha256sum "$OUT/$archive" | cut -d' ' -f1)

cat > "$OUT/ringshift.yaml" <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: ringshift
spec:
  version: v${VERSION}
  homepage: $(sed -n 's/^repository = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
  shortDescription: Inspect and steer ringshift clusters and their rebalances
  description: |
    Status, live watch, dry-run plans with estimated bytes and time per move,
    approval of a reviewed plan, drain/undrain/reweight of members, history,
    pause/resume and cancel for ringshift ShardClusters.
  platforms:
    - selector:
        matchLabels:
          os: linux
          arch: ${ARCH}
      uri: ${URI_BASE%/}/${archive}
      sha256: ${sha}
      bin: kubectl-ringshift
      files:
        - from: kubectl-ringshift
          to: .
        - from: README.md
          to: .
YAML
echo "[krew] $OUT/$archive ($(du -h "$OUT/$archive" | cut -f1), sha256 $sha)"
echo "[krew] manifest $OUT/ringshift.yaml: publish the archive at ${URI_BASE%/}/${archive}, then"
echo "       kubectl krew install --manifest=$OUT/ringshift.yaml"
