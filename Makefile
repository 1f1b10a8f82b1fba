# The two newcomer commands: `make run` (set up, then materialize the whole asset graph into the
# local instance) and `make test` (set up, then lint and test). Both create .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME
# Every month the bundled sample covers; partitions are monthly, keyed by their first day.
PARTITIONS ?= 2025-03-01...2026-07-01
DAGSTER := $(BIN)/dagster
DEFS := -m arxiv_assets.definitions

.PHONY: install run test lint dev

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: install $(DAGSTER_HOME)/dagster.yaml
	$(DAGSTER) asset materialize $(DEFS) --select raw_papers --partition-range $(PARTITIONS)
	$(DAGSTER) asset materialize $(DEFS) --select 'splits*'

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/pytest
