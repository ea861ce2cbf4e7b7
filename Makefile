# Flowport: the two quick-start commands are `make run` and `make test`.
VENV ?= .venv
# Test processes (pytest-xdist; each test file stays in one): the suite waits on servers, brokers and
# databases as much as it computes, so two keep both cores of a small machine busy.
TEST_WORKERS ?= 2
PY := $(VENV)/bin/python
export FLOWPORT_HOME ?= $(CURDIR)/.flowport
# dbt tasks run the dbt of the environment `make setup` makes for it (see scripts/bootstrap.sh).
export FLOWPORT_DBT ?= $(CURDIR)/.venv-dbt/bin/dbt

.PHONY: run example test lint bench setup lock clean

setup:
	@scripts/bootstrap.sh

## run: set up, start the instance (API, jobs) on the embedded default with the example flow
## loaded, run it once as a job, print the URL and the login; Ctrl-C stops it
run: setup
	$(VENV)/bin/flowport server --run-example $(SERVER_ARGS)

## example: set up and run the example flow once in this process (no server)
example: setup
	$(VENV)/bin/flowport example run

## test: set up, lint (ruff, mypy, import-linter) and run the whole test suite (the web UI's
## browser tests use Debian's chromium, installed here when missing)
test: setup lint
	@scripts/install-chromium.sh
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src/flowport
	$(VENV)/bin/lint-imports

## bench: the benchmarks of benchmarks/ (one command, prints ratios)
bench: setup
	$(PY) benchmarks/run.py $(BENCH_ARGS)

## lock: re-resolve and pin every dependency into requirements.lock
lock:
	rm -rf .lockenv && python3 -m venv .lockenv
	.lockenv/bin/pip install --quiet -e '.[dev]'
	.lockenv/bin/pip freeze --exclude-editable | grep -v '^flowport' > requirements.lock
	rm -rf .lockenv

clean:
	rm -rf $(VENV) .venv-dbt .flowport .pytest_cache .mypy_cache .ruff_cache
