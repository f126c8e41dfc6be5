# lb-operator — every target installs what it needs; `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONTROLPLANE_BUILD := tools/controlplane/build.sh

.PHONY: setup test lint format unit integration binaries controlplane crds demo bench-mutex bench-e2e clean

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

format: setup
	$(BIN)/ruff check --fix operator tests bench tools
	$(BIN)/ruff format operator tests bench tools

unit: setup
	$(BIN)/pytest tests/unit

integration: setup binaries
	$(BIN)/pytest tests/integration

## binaries: build (or find cached) kube-apiserver, kubectl and etcd
binaries:
	@$(CONTROLPLANE_BUILD) >/dev/null

## demo: control plane + simulator + operator, apply examples/demo/, watch it become Ready (LBOP_KUBECONFIG: use that cluster)
demo: setup binaries
	$(BIN)/python -m lb_operator.testing.demo

## crds: regenerate crds/ from operator/lb_operator/api/kinds.py (a test fails when crds/ is stale)
crds: setup
	$(BIN)/python -m lb_operator.api crds

## controlplane: run a local kube-apiserver + etcd in the foreground; prints `export KUBECONFIG=…`
controlplane: setup binaries
	$(BIN)/python -m lb_operator.testing.controlplane --binaries "$$($(CONTROLPLANE_BUILD))"

## bench-mutex: the Lease mutex's overhead, hand-over and take-over next to their baselines (~2 min)
bench-mutex: setup binaries
	$(BIN)/python bench/mutex_bench.py

## bench-e2e: makespan of a 720-object fleet vs the cloud's ideal; 3 vs 1 replicas, no locks, one global lock (~15 min)
bench-e2e: setup binaries
	$(BIN)/python bench/e2e_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
