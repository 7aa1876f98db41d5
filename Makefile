# One task runner for people and CI.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
PORT ?= 8000
HOST ?= 127.0.0.1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-test demo test lint typecheck bench bench-gateway bench-dashboard assets clean
ECHARTS_VERSION := 6.1.0
ASSETS := src/fleetledger/server/dashboard/vendor

## The runtime only (what `make demo` needs): no test, lint or browser packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(STAMP)

## The runtime plus the test extra (what `make test`, lint, typecheck and bench need).
$(TEST_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e ".[test]"
	touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

## Build the demo ledger in the embedded SQLite database, then serve API and dashboard on
## http://$(HOST):$(PORT) (`make demo PORT=8100` for another port).
demo: $(STAMP)
	$(BIN)/fleetledger init
	$(BIN)/fleetledger demo
	$(BIN)/fleetledger serve --host $(HOST) --port $(PORT)

## The whole test suite (storage tests on SQLite, and on PostgreSQL when FLEETLEDGER_TEST_POSTGRES_URL is set;
## browser tests in Debian's Chromium, installed with apt when missing and we may).
test: $(TEST_STAMP)
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
		echo "chromium not installed: browser tests will be skipped (apt-get install -y chromium)"; }
	$(BIN)/pytest -q -n $${PYTEST_WORKERS:-$$(( $$(nproc) + 1 ))} --dist loadgroup --no-loadscope-reorder --durations=15

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

## Benchmarks (results: docs/performance.md).
bench: $(TEST_STAMP)
	$(BIN)/python bench/run.py

## Gateway latency/throughput vs the upstream simulator, LiteLLM's proxy side by side (installed into bench/.cache/).
bench-gateway: $(TEST_STAMP)
	$(BIN)/python bench/gateway.py --install-litellm

## Cost Management page load in Debian's Chromium on the 1M-event, 50-department demo ledger (cached in bench/.cache/).
bench-dashboard: $(TEST_STAMP)
	$(BIN)/python bench/dashboard.py

## Refresh the vendored chart library (Apache ECharts, from the npm registry, pinned; license kept).
assets:
	rm -rf .assets && mkdir -p .assets
	cd .assets && npm pack echarts@$(ECHARTS_VERSION) --silent && tar xzf echarts-$(ECHARTS_VERSION).tgz
	cp .assets/package/dist/echarts.min.js $(ASSETS)/echarts.min.js
	cp .assets/package/LICENSE $(ASSETS)/ECHARTS-LICENSE
	cp .assets/package/NOTICE $(ASSETS)/ECHARTS-NOTICE
	rm -rf .assets

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
