#!/usr/bin/env bash
# Builds ringshift-kubelet-api (this directory's Go module: the kubelet API server of the process
# kubelet) and prints its path; `build.sh test` runs go vet and its unit tests (see ../go-build.sh).
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/../go-build.sh" "$HERE" ringshift-kubelet-api "$@"
