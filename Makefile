# Tidelake developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.tidelake/dagster

.DEFAULT_GOAL := help
.PHONY: help venv dev demo test test-unit check fmt bench clean

help: ## List the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) ## Create .venv and install Tidelake with its dev tools

dev: $(STAMP) ## Embedded broker + simulator + ingestion worker + `dagster dev` on http://127.0.0.1:3000 (Ctrl-C stops all)
	$(VENV)/bin/tidelake dev

demo: $(STAMP) ## Headless: ~1 min of simulated traffic, drain to Delta, print the reconciliation
	$(VENV)/bin/tidelake demo

test: $(STAMP) ## The whole test suite: unit, integration (embedded broker + S3 API), Dagster
	$(PY) -m pytest tests

test-unit: $(STAMP) ## Fast unit tests only (no network)
	$(PY) -m pytest tests/unit

check: $(STAMP) ## ruff format --check, ruff lint, mypy, Terraform checks
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(MAKE) --no-print-directory check-terraform

fmt: $(STAMP) ## Format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP) ## Ingest throughput benchmark (prints ratios; see docs/PERFORMANCE.md)
	$(PY) benchmarks/ingest_throughput.py

clean: ## Remove local state (.tidelake/) — the lake, the ledger and Dagster's storage
	rm -rf .tidelake

# checkov has pinned dependencies that clash with dagster's: it gets a virtualenv of its own.
TOOLS := .venv-tools
CHECKOV_STAMP := $(TOOLS)/.checkov-installed
.PHONY: check-terraform

$(CHECKOV_STAMP): terraform/checkov-requirements.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet -r terraform/checkov-requirements.txt
	touch $(CHECKOV_STAMP)

check-terraform: $(STAMP) $(CHECKOV_STAMP) ## Terraform: parse/type/wiring/fmt tests, checkov over terraform/ and the Dockerfile
	$(PY) -m pytest -q tests/unit/test_terraform.py
	$(TOOLS)/bin/checkov --config-file terraform/.checkov.yaml
	$(TOOLS)/bin/checkov --file Dockerfile --framework dockerfile --compact --quiet --skip-download
