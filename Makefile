# vramgate's tasks. `make demo` is the main job, `make test` the whole suite (what CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install controlplane node-deps lint test unit e2e demo crd catalog bench bench-scale calibration clean

# The virtual environment is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# etcd, kube-apiserver, controller-manager, scheduler, kubectl, helm, kubelet and the pod sandbox's
# pause program from Go modules (cached).
controlplane:
	bash hack/controlplane/build.sh

# containerd, runc, CNI plugins, debootstrap and buildah for the real node (apt, as root; else one line).
node-deps:
	bash hack/node/install-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit

e2e: install controlplane node-deps
	$(BIN)/pytest tests/e2e

test: install controlplane node-deps lint
	$(BIN)/pytest

# Against $KUBECONFIG when it is set, else on the local control plane.
demo: install $(if $(KUBECONFIG),,controlplane node-deps)
	$(BIN)/python hack/demo.py

# The chart ships a copy (helm lint warns about a symlink); a test keeps both identical.
crd: install
	$(BIN)/python -m vramgate.crd > crds/llmdeployments.vramgate.dev.yaml
	cp crds/llmdeployments.vramgate.dev.yaml charts/vramgate/crds/

# The package reads the catalogs as JSON built from the YAML sources; a test keeps them identical.
catalog: install
	$(BIN)/python -c 'from vramgate.sizing.catalog import write_catalogs; write_catalogs()'

calibration: install
	$(BIN)/vramgate calibrate benchmarks/calibration/vllm_startup_logs.csv

bench: install
	$(BIN)/python benchmarks/plan_speed.py

# The operator with 200 and 1,000 resources against a plain client loop (minutes; method in the script).
bench-scale: install controlplane
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .hypothesis
