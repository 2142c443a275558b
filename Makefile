# transferlab — run `make help` for the list of targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PRETRAINED := outputs/pretrained/mnist_source_resnet18.safetensors
FISHER := outputs/pretrained/mnist_source_resnet18.fisher.safetensors
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install train pretrain report bench parity test test-slow lint format clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install transferlab with dev extras (once)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# stage 1 writes both files in one run (the Fisher is for regularization=ewc)
$(PRETRAINED) $(FISHER) &: | $(STAMP)
	$(PY) -m transferlab.train experiment=pretrain_source

pretrain: $(PRETRAINED) $(FISHER) ## stage 1: pretrain the backbone on the source task (digits 0-4)

train: $(STAMP) $(PRETRAINED) ## stage 2: fine-tune the source backbone on the target task (ARGS=overrides)
	$(PY) -m transferlab.train $(ARGS)

report: $(STAMP) ## results.csv, report.md and plots for a sweep (DIR=outputs/multirun/<date>)
	@test -n "$(DIR)" || { echo "error: name the sweep dir: make report DIR=outputs/multirun/<date>" >&2; exit 2; }
	$(VENV)/bin/transferlab-report $(DIR) $(ARGS)

test: $(STAMP) ## fast test suite
	$(PY) -m pytest -q $(ARGS)

test-slow: $(STAMP) ## slow and smoke tests only (full config grids, long runs)
	$(PY) -m pytest -q -m 'slow or smoke' $(ARGS)

bench: $(STAMP) $(PRETRAINED) ## performance benchmarks: outputs/bench/results.json + results.md (see benchmarks/README.md)
	$(PY) -m benchmarks.run $(ARGS)

parity: $(STAMP) $(PRETRAINED) ## plain timm loop vs transferlab-train per strategy (ARGS="--quick" for a smoke run)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.parity $(ARGS)

lint: $(STAMP) ## ruff lint + format check
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean: ## remove outputs, caches and the venv
	rm -rf outputs .pytest_cache .ruff_cache $(VENV) src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
