# lb-operator — every target installs what it needs; `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONTROLPLANE_BUILD := tools/controlplane/build.sh
HELM_BUILD := tools/helm/build.sh
TOXIPROXY_BUILD := tools/toxiproxy/build.sh

.PHONY: setup test test-modes test-octavia octavia chaos lint format unit integration binaries controlplane crds demo bench-mutex bench-e2e bench-e2e-real bench-e2e-octavia bench-scale image kind-e2e clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## test: lint, then the unit and integration suites against a real kube-apiserver
test: lint binaries
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check operator tests bench tools
	$(BIN)/ruff format --check operator tests bench tools
	$(BIN)/mypy
	$(BIN)/hadolint --no-color Dockerfile

format: setup
	$(BIN)/ruff check --fix operator tests bench tools
	$(BIN)/ruff format operator tests bench tools

unit: setup
	$(BIN)/pytest tests/unit

integration: setup binaries
	$(BIN)/pytest tests/integration

## binaries: build (or find cached) kube-apiserver, kubectl, etcd, helm and toxiproxy
binaries:
	@$(CONTROLPLANE_BUILD) >/dev/null
	@$(HELM_BUILD) >/dev/null
	@$(TOXIPROXY_BUILD) >/dev/null

## demo: control plane + simulator + operator, apply examples/demo/, watch it become Ready (LBOP_KUBECONFIG: use that
## cluster; BACKEND=octavia: the same fleet on Octavia's own API server)
demo: setup binaries
	$(BIN)/python -m lb_operator.testing.demo $(if $(BACKEND),--backend $(BACKEND))

## crds: regenerate crds/ and the chart's copy from operator/lb_operator/api/kinds.py (tests fail when stale)
crds: setup
	$(BIN)/python -m lb_operator.api crds
	$(BIN)/python -m lb_operator.api charts/lb-operator/files/crds

## octavia: Octavia's own API server (noauth, its provider played locally) on 127.0.0.1:9876 in the foreground
octavia:
	@python=$$(tools/octavia/build.sh) && $$python tools/octavia/serve.py --port 9876 --state "$${TMPDIR:-/tmp}/lb-operator-octavia"

## test-octavia: the Octavia suites (its client, the operator, Keystone, faults), then the operator's integration
## suites and the chaos suites (short) with Octavia's own API server as the cloud (LBOP_TEST_BACKEND=octavia; ~15 min)
test-octavia: setup binaries
	$(BIN)/pytest tests/integration/octavia
	LBOP_TEST_BACKEND=octavia $(BIN)/pytest tests/integration/operator
	LBOP_TEST_BACKEND=octavia $(BIN)/pytest -s -p no:cacheprovider tests/chaos

## controlplane: run a local kube-apiserver + etcd in the foreground; prints `export KUBECONFIG=…`
controlplane: setup binaries
	$(BIN)/python -m lb_operator.testing.controlplane --binaries "$$($(CONTROLPLANE_BUILD))"

## bench-mutex: the Lease mutex's overhead, hand-over and take-over next to their baselines (~2 min)
bench-mutex: setup binaries
	$(BIN)/python bench/mutex_bench.py

## bench-e2e-real: bench-e2e's scenarios a and b at a real cloud's pace (2 s a change, 30 s to build an LB; ~8 min)
bench-e2e-real: setup binaries
	$(BIN)/python bench/e2e_bench.py --latency 2 --lb-ready-delay 30 --only a,b

## bench-scale: 10,000 objects created while 3 replicas serve: time, memory, API writes, cloud reads (~10 min)
bench-scale: setup binaries
	$(BIN)/python bench/scale_bench.py $(if $(OBJECTS),--objects $(OBJECTS))

## bench-e2e-octavia: bench-e2e's scenarios e and f: Octavia's own API server, 3 replicas with and without locks (~4 min)
bench-e2e-octavia: setup binaries
	$(BIN)/python bench/e2e_bench.py --only e,f

## bench-e2e: makespan of a 720-object fleet vs the cloud's ideal; 3 vs 1 replicas, no locks, one global lock (~15 min)
bench-e2e: setup binaries
	$(BIN)/python bench/e2e_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

## chaos: the long chaos suites (380 objects; SIGKILL, SIGSTOP, a black-holed replica, API-server restarts,
## cloud faults); each prints a RESULT line (~15 min)
chaos: setup binaries
	LBOP_CHAOS=long $(BIN)/pytest -s -p no:cacheprovider tests/chaos

## test-modes: the operator's integration tests against the simulator's serialize and async modes too
test-modes: setup binaries
	LBOP_TEST_SIMULATOR_MODE=serialize $(BIN)/pytest tests/integration/operator tests/chaos
	LBOP_TEST_SIMULATOR_MODE=async $(BIN)/pytest tests/integration/operator tests/chaos

## image: build the container image lb-operator:<version> (needs Docker; IMAGE=… to name it otherwise)
IMAGE ?= lb-operator:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	@command -v docker >/dev/null || { echo "make image: docker is not installed; the Dockerfile is linted by make lint (hadolint)" >&2; exit 1; }
	docker build -t $(IMAGE) .

## kind-e2e: kind cluster + image + helm install + the integration suite on it (needs Docker and kind)
kind-e2e: setup binaries
	LBOP_KIND_E2E=1 $(BIN)/pytest -rs tests/e2e
