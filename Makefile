# The two commands of the README are `make demo` and `make test`.  Each one
# creates or updates the virtual environment (.venv) from requirements.lock
# first, so a fresh machine needs nothing but Python 3.11+.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

# Telemetry off for every command started from here (the package sets it too).
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: venv demo test lock prefect bench clean-db api loadtest

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

## demo: embedded PostgreSQL, generated data, first champion, one daily scoring run
demo: venv
	$(BIN)/payer-scoring demo

## test: the whole test suite against a real (embedded) PostgreSQL
test: venv
	$(BIN)/python -m pytest

## lock: re-resolve requirements.lock from pyproject.toml (needs the registry)
lock: venv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -o requirements.lock

## bench: daily scoring, retraining and loading at 100k, 300k and 1M customers against the database's floors
##        (README "Benchmark"); BENCH_ARGS="--sizes 100000" for the small size only
BENCH_ARGS ?= --sizes 100000,300000,1000000 --reuse --keep-db --flows in-process,dask:1,dask:2 --flows-at 1000000
bench: venv
	$(BIN)/python benchmarks/run_benchmark.py $(BENCH_ARGS)

clean-db: venv
	-$(BIN)/payer-scoring db stop
	rm -rf .pgdata

## prefect: local Prefect server + UI on :4200, work pool, both deployments, a worker
prefect: venv
	bash scripts/prefect_server.sh

## api: the HTTP service on 127.0.0.1:8000 (README "HTTP service"); API_ARGS="--port 8080 --workers 2"
API_ARGS ?=
api: venv
	$(BIN)/payer-scoring api $(API_ARGS)

## loadtest: the HTTP service on generated data under Locust, headless; fails when a target is missed
LOADTEST_ARGS ?=
loadtest: venv
	$(BIN)/python benchmarks/loadtest.py $(LOADTEST_ARGS)
