#!/usr/bin/env bash
# Builds the ringshift-node and ringshift-operator images from this workspace's binaries and
# pushes them: push.sh REGISTRY TAG PROFILE
#   REGISTRY  host:port[/path] (plain HTTP for loopback hosts, else HTTPS with docker's credentials)
#   TAG       image tag, e.g. 0.1.0 or dev
#   PROFILE   release (target/release) or debug (target/debug: the e2e tiers use these so that CI
#             needs no release build); the images hold stripped copies
# IMAGE_BIN_DIR overrides where the binaries are (default target/<profile>).
# Each image: the binary, the glibc shared libraries it loads (from this machine, via ldd),
# /etc/passwd and /etc/group with user 65532; linux/amd64. Reports go to target/images/.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
[[ $# -eq 3 ]] || { echo "usage: $0 REGISTRY TAG release|debug" >&2; exit 2; }
registry=$1 tag=$2 profile=$3
case $profile in release | debug) ;; *) echo "profile must be release or debug" >&2; exit 2 ;; esac
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
tool=$("$HERE/build-tool.sh")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -1)
revision=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
out="$TARGET/images"
mkdir -p "$out"
for bin in ringshift-node ringshift-operator; do
  src="${IMAGE_BIN_DIR:-$TARGET/$profile}/$bin"
  [[ -x $src ]] || { echo "[images] $src is missing: cargo build ${profile/release/--release} -p $bin" >&2; exit 1; }
  # Both profiles keep line tables (Cargo.toml); the image gets a stripped copy, cargo's binary
  # is untouched.
  strip -o "$out/$bin.$profile.stripped" "$src"
  src="$out/$bin.$profile.stripped"
  "$tool" build --tag "$registry/$bin:$tag" --binary "$src" --dest "/usr/local/bin/$bin" \
    --report "$out/$bin.$profile.json" \
    --label "org.opencontainers.image.title=$bin" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "dev.ringshift.build-profile=$profile"
done
