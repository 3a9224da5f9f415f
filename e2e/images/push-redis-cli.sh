#!/usr/bin/env bash
# Pushes REGISTRY/redis:7: Debian's redis-cli (redis-tools) with the shared libraries it loads,
# user 65532, the program as the image's Cmd. It stands in for Docker Hub's redis:7 (which cannot
# be pulled here) in the README's quick start and its e2e test (e2e/tests/quick_start.rs):
# `kubectl run -it --rm cli --image=REGISTRY/redis:7 -- redis-cli -h ...` runs the same way.
# Usage: push-redis-cli.sh REGISTRY
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
[[ $# -eq 1 ]] || { echo "usage: $0 REGISTRY" >&2; exit 2; }
cli=$(command -v redis-cli) || { echo "[images] redis-cli is missing (apt-get install redis-tools)" >&2; exit 1; }
tool=$("$HERE/build-tool.sh")
"$tool" build --tag "$1/redis:7" --binary "$cli" --dest /usr/local/bin/redis-cli --cmd \
  --label "org.opencontainers.image.title=redis-cli" \
  --label "org.opencontainers.image.description=redis-cli from this machine's redis-tools, for the quick start"
