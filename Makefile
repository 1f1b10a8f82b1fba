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
# The graph in the order a backfill runs it: the CLI takes a partition range only for partitioned assets,
# so the unpartitioned steps before and after paper_embeddings are runs of their own.
UP_TO_EXPORT := splits,pairs,tfidf_baseline,model,ir_metrics,classifier_metrics,evaluation_embeddings,promoted_model,onnx_model

# Tools whose pins clash with the project's (checkov), in a venv of their own; the tests run their
# binaries. The `*` .gitignore inside it keeps it out of git, as Python 3.13's venv does by itself.
TOOLS_VENV := .venv-tools
TOOLS_CONSTRAINTS := arxiv_assets_tests/prod/tools-constraints.txt

.PHONY: install tools run test lint dev

install: $(VENV)/.installed

tools: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: $(TOOLS_CONSTRAINTS)
	$(PYTHON) -m venv $(TOOLS_VENV)
	echo '*' > $(TOOLS_VENV)/.gitignore
	$(TOOLS_VENV)/bin/pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/pip install --quiet -c $(TOOLS_CONSTRAINTS) checkov
	touch $@

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
	$(DAGSTER) asset materialize $(DEFS) --select $(UP_TO_EXPORT)
	$(DAGSTER) asset materialize $(DEFS) --select paper_embeddings --partition-range $(PARTITIONS)
	$(DAGSTER) asset materialize $(DEFS) --select faiss_index,release

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

lint: install
	$(BIN)/ruff check .

test: lint tools
	$(BIN)/pytest
