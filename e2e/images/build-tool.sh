#!/usr/bin/env bash
# Builds ringshift-oci (this directory's Go module: an OCI registry and an image builder) and
# prints its path; `build-tool.sh test` runs go vet and its unit tests (see ../go-build.sh).
HERE="$(cd "$(dirname "$0")" && pwd)"
exec "$HERE/../go-build.sh" "$HERE" ringshift-oci "$@"
