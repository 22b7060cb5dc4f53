# Two commands do all the set-up: `make run` and `make test`. Only Python 3.11+ is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-slow lint bench bench-receiver bench-rules bench-pipeline compose-config rules-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/fieldrelay run

# Everything, including the slow chaos/fault suites (marked `slow`).
test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m 'not slow'

test-slow: $(STAMP)
	$(BIN)/pytest -m slow

# mypy reads its strictness from pyproject.toml: --strict for the product, check_untyped_defs for tests/.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy fieldrelay fieldrelay_cli receiver workers rules sandbox tests

rules-check: $(STAMP)
	$(BIN)/fieldrelay rules check

bench: bench-receiver bench-rules bench-pipeline

bench-receiver: $(STAMP)
	$(BIN)/python bench/receiver_throughput.py

bench-rules: $(STAMP)
	$(BIN)/python bench/rules_matching.py

bench-pipeline: $(STAMP)
	$(BIN)/python bench/pipeline_throughput.py

compose-config:
	@if docker compose version >/dev/null 2>&1; then docker compose config -q; else docker-compose config -q; fi && echo 'docker-compose.yml is valid'

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
