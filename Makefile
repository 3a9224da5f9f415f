# ringshift: build, test and demo. Everything runs on a plain Debian 12 machine as root; the
# end-to-end tiers use the local Kubernetes control plane of e2e/cluster (see e2e/README.md).

SHELL := /bin/bash
CARGO ?= cargo
# RINGSHIFT_CLUSTER=N (0-9) selects one of several local clusters that can run side by side
# (own ports, pod addresses and state dir; see e2e/cluster/lib.sh).
export RINGSHIFT_CLUSTER ?= 0
ifeq ($(RINGSHIFT_CLUSTER),0)
export RINGSHIFT_STATE ?= /tmp/ringshift-k8s
else
export RINGSHIFT_STATE ?= /tmp/ringshift-k8s-$(RINGSHIFT_CLUSTER)
endif
LOCAL_KUBECONFIG := $(RINGSHIFT_STATE)/kubeconfig
CLUSTER := e2e/cluster
STAGE := .ci/stage

.PHONY: build test lint unit smoke e2e demo bench operator-scale crds rules reliability redis-compat krew cluster-up cluster-down images help

help:
	@echo "make build        build every binary of the workspace (debug)"
	@echo "make test         fmt check, clippy, unit+integration tests, then the e2e smoke tier on a local cluster"
	@echo "make e2e          the e2e suite against the current KUBECONFIG"
	@echo "make demo         chart + a cluster under live load, scaled 3->5->2, with a summary"
	@echo "make bench        benchmark binaries (print tables)"
	@echo "make operator-scale  one operator for 100 clusters on the local cluster: API requests, p99, RSS"
	@echo "make redis-compat Redis's own test suite against redis-server and a ringshift node: per-unit table"
	@echo "make crds         regenerate crds/ from the operator's Rust types"
	@echo "make rules        promtool check + unit tests of the alert rules (deploy/prometheus/)"
	@echo "make krew URI_BASE=URL   kubectl-ringshift archive + krew manifest in target/krew"
	@echo "make reliability  the long tier: every e2e test, the #[ignore]d long ones included, on the local cluster"
	@echo "make images       release node + operator images, pushed to REGISTRY= (default: the local cluster's registry)"
	@echo "make cluster-up / cluster-down   start / stop the local control plane"

build:
	$(CARGO) build --workspace --bins

# RINGSHIFT_SKIP_LINT names tools .ci/run found missing (rustfmt, clippy): each is skipped loudly.
lint:
	@if [[ " $$RINGSHIFT_SKIP_LINT " == *" rustfmt "* ]]; then echo "!!! rustfmt missing: format check SKIPPED" >&2; \
	else $(CARGO) fmt --all -- --check; fi
	@if [[ " $$RINGSHIFT_SKIP_LINT " == *" clippy "* ]]; then echo "!!! clippy missing: clippy SKIPPED" >&2; \
	else $(CARGO) clippy --workspace --all-targets -- -D warnings; fi
	@if [[ -f deploy/render.sh ]]; then bash deploy/render.sh --check; fi
	@$(MAKE) --no-print-directory rules

# The alert rules: syntax (promtool check rules) and behaviour (promtool test rules: each alert
# fires on its series and not on a near miss). promtool comes with Debian's prometheus package.
rules:
	@command -v promtool >/dev/null || { echo "[rules] installing Debian's prometheus (promtool)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	promtool check rules deploy/prometheus/ringshift.rules.yaml
	cd deploy/prometheus && promtool test rules ringshift.rules.test.yaml

# Unit and integration tests; tests that need a cluster say SKIPPED here and run in the smoke tier.
unit:
	RINGSHIFT_E2E=off $(CARGO) test --workspace
	e2e/images/build-tool.sh test
	e2e/kubelet-api/build.sh test

# $(call with_cluster,CMD): runs CMD against the local cluster with RINGSHIFT_E2E=require. Starts
# the cluster (Kubernetes $RINGSHIFT_K8S_VERSION, default the newest) unless it already runs with
# that version (then it is reused and left running; another version is an error) and stops what it
# started, also when CMD fails.
define with_cluster
if $(CLUSTER)/status >/dev/null 2>&1; then \
  want=$${RINGSHIFT_K8S_VERSION:-$(K8S_NEWEST)}; have=$$(cat $(RINGSHIFT_STATE)/k8s-version 2>/dev/null); \
  if [[ "$$have" != "$$want" ]]; then \
    echo "[e2e] the running local cluster is Kubernetes $$have, not $$want: stop it ($(CLUSTER)/down) or set RINGSHIFT_K8S_VERSION=$$have"; exit 1; fi; \
  echo "[e2e] reusing the running local cluster ($(RINGSHIFT_STATE), Kubernetes $$have); it stays up"; started=0; \
  $(CLUSTER)/status | grep -q "bin dir $(CURDIR)/target/debug" || \
    echo "[e2e] WARNING: its kubelet runs binaries of another checkout: $$($(CLUSTER)/status | grep kubelet)"; \
else \
  $(STAGE) cluster-up $(CLUSTER)/up || { $(CLUSTER)/down; exit 1; }; started=1; \
fi; \
KUBECONFIG=$(LOCAL_KUBECONFIG) RINGSHIFT_E2E=require $(1); rc=$$?; \
if (( rc != 0 )); then echo "[e2e] failed; kubelet log tail:"; tail -n 30 $(RINGSHIFT_STATE)/logs/kubelet.log 2>/dev/null; fi; \
if (( started )); then $(STAGE) cluster-down $(CLUSTER)/down; fi; \
exit $$rc
endef

# The e2e tests (cargo test -p ringshift-e2e --tests) on the local cluster.
smoke: build
	@$(call with_cluster,$(STAGE) e2e-smoke $(CARGO) test -p ringshift-e2e --tests --no-fail-fast)

test:
	@$(STAGE) lint $(MAKE) --no-print-directory lint
	@$(STAGE) unit $(MAKE) --no-print-directory unit
	@$(STAGE) smoke $(MAKE) --no-print-directory smoke

# Against whatever KUBECONFIG points at (a real cluster needs the images; see e2e/README.md).
e2e: build
	RINGSHIFT_E2E=require $(CARGO) test -p ringshift-e2e --tests --no-fail-fast

# The long tier: a long bad-input (fuzz) run, the protocol model's large configurations, then every
# e2e test including the long ones marked #[ignore], on a local cluster of the newest and then of
# the oldest supported Kubernetes release (e2e/cluster/versions.sh; RELIABILITY_K8S overrides).
# Each scenario appends a line to the version's report; the newest version's table is printed
# and written into README.md (between the reliability markers) whatever the outcome, with the
# oldest version's tally in its note; the exit code is the tests'.
FUZZ_CASES ?= 20000
K8S_NEWEST := $(shell . e2e/cluster/versions.sh && echo $$K8S_NEWEST)
K8S_OLDEST := $(shell . e2e/cluster/versions.sh && echo $$K8S_OLDEST)
RELIABILITY_K8S ?= $(K8S_NEWEST) $(K8S_OLDEST)
report = $(CURDIR)/target/reliability-report-k8s-$(1).jsonl
reliability: build
	@echo "[reliability] bad-input property tests with $(FUZZ_CASES) cases each"
	@RINGSHIFT_FUZZ_CASES=$(FUZZ_CASES) $(STAGE) fuzz $(CARGO) test -p ringshift-node --test bad_input --test bad_input_live --test commands_fuzz
	@echo "[reliability] a 1,000,000-element hash moves in bounded chunks (node/tests/big_keys.rs, release build)"
	@$(STAGE) big-keys $(CARGO) test --release -p ringshift-node --test big_keys -- --nocapture
	@echo "[reliability] ring weights at 10..2000 members (release build)"
	@$(STAGE) ring-weights $(CARGO) test --release -p ringshift-ring --test props -- --ignored
	@echo "[reliability] the protocol model's large configurations (operator/model/README.md)"
	@$(STAGE) model $(CARGO) test -p ringshift-model -- --include-ignored --nocapture
	@rc=0; for v in $(RELIABILITY_K8S); do \
	  echo "[reliability] Kubernetes $$v: every e2e test, including the long ones marked #[ignore]"; \
	  rm -f $(call report,$$v); \
	  ( export RINGSHIFT_K8S_VERSION=$$v; $(call with_cluster,RINGSHIFT_REPORT=$(call report,$$v) $(STAGE) reliability-k8s-$$v $(CARGO) test -p ringshift-e2e --tests --no-fail-fast -- --include-ignored) ) || rc=1; \
	done; \
	first=$(firstword $(RELIABILITY_K8S)); note="Measured by \`make reliability\` on $$(date -u +%Y-%m-%d): $$(nproc) cores, debug build, local control plane (Kubernetes v$$first)."; \
	for v in $(wordlist 2,9,$(RELIABILITY_K8S)); do f=$(call report,$$v); \
	  note="$$note The same suite on v$$v: $$(grep -c '"passed":true' $$f 2>/dev/null || echo 0) of $$(grep -c . $$f 2>/dev/null || echo 0) scenarios passed."; done; \
	if [[ -s $(call report,$$first) ]]; then target/debug/ringshift-reliability-report $(call report,$$first) --readme README.md \
	  --note "$$note" || rc=$$((rc ? rc : 1)); fi; \
	exit $$rc

# For now: the control plane with the CRDs installed and three test pods running on their own
# addresses with their own volumes. It keeps running afterwards.
# The demo: the local control plane, the Helm chart (the operator runs as a pod), a ShardCluster
# under a live checked load scaled 3 -> 5 -> 2 with progress, then a summary. Exits non-zero if
# an acknowledged write was lost. Stops the control plane if it started it (KEEP=1 keeps it).
demo: build
	@$(CLUSTER)/install-helm.sh
	@for t in prometheus jq; do command -v $$t >/dev/null || { echo "[demo] installing Debian's prometheus and jq"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus jq fonts-dejavu-core >/dev/null; break; }; done
	@[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core >/dev/null
	@if $(CLUSTER)/status >/dev/null 2>&1; then started=0; \
	else $(CLUSTER)/up || { $(CLUSTER)/down; exit 2; }; started=1; fi; \
	prom=$$($(CLUSTER)/prometheus.sh start | tail -1) || prom=""; \
	KUBECONFIG=$(LOCAL_KUBECONFIG) HELM=$${RINGSHIFT_CACHE:-$$HOME/.cache/ringshift}/helm/helm \
	  target/debug/ringshift-demo $(if $(KEEP),--keep) $${prom:+--prometheus $$prom} $(DEMO_ARGS); rc=$$?; \
	$(CLUSTER)/prometheus.sh stop >/dev/null 2>&1 || true; \
	if (( started )) && [[ -z "$(KEEP)" ]]; then $(CLUSTER)/down; \
	else echo "[demo] control plane left running: export KUBECONFIG=$(LOCAL_KUBECONFIG); stop it with $(CLUSTER)/down"; fi; \
	exit $$rc

bench:
	$(CARGO) bench --workspace --benches

# One operator for many clusters on the local cluster (not part of `make test`): API requests/s
# idle and per move in flight (kube-apiserver's apiserver_request_total), reconcile p99, RSS.
# SCALE_ARGS passes flags, e.g. SCALE_ARGS="--clusters 50 --operator /path/to/other/operator".
SCALE_ARGS ?=
operator-scale:
	$(CARGO) build -p ringshift-operator -p ringshift-e2e --bins
	@$(call with_cluster,$(CURDIR)/target/debug/ringshift-operator-scale $(SCALE_ARGS))

# Redis's own test suite (units of issue 14) against redis-server and a standalone node; prints
# the per-unit table and writes node/compat/failing-tests.txt. A measurement: exits 0. See
# node/compat/redis-compat.sh (UNITS=..., UNIT_TIMEOUT=...).
redis-compat:
	@node/compat/redis-compat.sh

# The plugin's krew archive and manifest (deploy/krew/package.sh); URI_BASE is where you
# publish the archive.
krew:
	@URI_BASE="$(URI_BASE)" deploy/krew/package.sh

crds:
	$(CARGO) run -q -p ringshift-operator --bin ringshift-operator -- crd --out-dir crds

# The node and operator images (release binaries; no container daemon: e2e/images builds and
# pushes them). REGISTRY=host:port[/path] (default: the local cluster's registry, which
# e2e/cluster/up starts), TAG= (default: the workspace version). Sizes: README "Images".
REGISTRY ?= 127.0.0.1:$(shell echo $$((15000 + $(RINGSHIFT_CLUSTER))))
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
images:
	$(CARGO) build --release -p ringshift-node -p ringshift-operator
	e2e/images/push.sh $(REGISTRY) $(TAG) release

cluster-up:
	$(CLUSTER)/up

cluster-down:
	$(CLUSTER)/down
