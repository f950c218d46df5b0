# The few commands people type. `make demo` and `make test` install what they need themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: help venv deps lab-build lint typecheck crds crds-check test test-unit test-integration demo demo-down lab-up lab-down bench clean

help:
	@echo "make demo        the whole loop on the embedded lab (local control plane, MLflow, PostgreSQL, S3, Prometheus)"
	@echo "make demo-down   stop the lab"
	@echo "make test        lint, types, generated-file checks and every test tier"
	@echo "make crds        regenerate crds/ and the chart's copy from operator/recops/api"
	@echo "make bench       run the benchmarks under bench/ (slow; results in bench/results/)"

$(STAMP): pyproject.toml constraints.txt hatch_build.py model-format/recops_model/_qscore.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> Installing Python packages into $(VENV) (first time: a few minutes)"
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[all,dev]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages the lab and the tests use (Prometheus, Alertmanager, promtool); installed when missing.
deps: venv
	$(BIN)/recops lab deps

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm from the Go module proxy,
# cached under ~/.cache/recops (a cold build takes many minutes on 2 cores; progress is shown).
lab-build: venv
	$(BIN)/recops lab build

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy operator/recops/api operator/recops/controllers operator/recops/conditions.py operator/recops/crdgen.py

crds: venv
	$(BIN)/recops crds

crds-check: venv
	$(BIN)/recops crds --check

test-unit: venv
	$(BIN)/pytest tests/unit

test-integration: venv deps lab-build
	$(BIN)/pytest tests/integration tests/e2e

test: venv deps lab-build lint typecheck crds-check
	$(BIN)/pytest tests

lab-up: venv deps lab-build
	$(BIN)/recops lab up

lab-down: venv
	$(BIN)/recops lab down

demo: venv deps lab-build
	$(BIN)/recops demo

demo-down: lab-down

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
