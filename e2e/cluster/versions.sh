# shellcheck shell=bash
# Kubernetes releases the e2e harness can run. Each has a build module under k8s-build/<version>/.
# The newest is the default (make test, make demo); make reliability runs the newest and the oldest.
K8S_NEWEST=1.37.2
K8S_OLDEST=1.35.4
K8S_SUPPORTED=("$K8S_OLDEST" "$K8S_NEWEST")
