# Two commands do all the set-up: `make run` and `make test`. Only Python 3.11+ is needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Where `make run` keeps its dev state (FIELDRELAY_DATA_DIR's default).
DATA_DIR ?= var

.PHONY: run reset test test-fast test-slow lint bench bench-receiver bench-rules bench-pipeline compose-config rules-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Starts from a clean dev state; `make run KEEP=1` keeps the last run's Redis data (README: Every run starts clean).
run: $(STAMP)
	$(BIN)/fieldrelay run $(if $(KEEP),--keep)

# Removes the dev state under var/ (Redis data, spool, beat schedule, logs), unless a `fieldrelay run` uses it.
reset:
	@if [ -e $(DATA_DIR)/run.lock ] && ! flock -n $(DATA_DIR)/run.lock true; then \
		echo "a fieldrelay run is using $(DATA_DIR)/: stop it first (Ctrl-C)"; exit 1; fi
	rm -rf $(DATA_DIR)
	@echo "removed $(DATA_DIR)/; the next \`make run\` starts from a clean dev state"

# Everything, including the slow chaos/fault suites (marked `slow`). Two xdist workers, one test file each at a
# time: every file's stack has its own ports and processes, and the session's private Redis is per worker.
XDIST := -n 2 --dist loadfile

test: $(STAMP)
	$(BIN)/pytest $(XDIST)

test-fast: $(STAMP)
	$(BIN)/pytest $(XDIST) -m 'not slow'

test-slow: $(STAMP)
	$(BIN)/pytest $(XDIST) -m slow

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
