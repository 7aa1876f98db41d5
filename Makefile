# One task runner for people and CI.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

## Build the demo ledger in the embedded SQLite database, then serve the API on http://127.0.0.1:8000.
demo: $(STAMP)
	$(BIN)/tokenledger init
	$(BIN)/tokenledger demo
	$(BIN)/tokenledger serve --host 127.0.0.1 --port 8000

## The whole test suite (storage tests on SQLite, and on PostgreSQL when TOKENLEDGER_TEST_POSTGRES_URL is set).
test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## Benchmarks (results: docs/performance.md).
bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
