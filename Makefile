# AlphaForge: `make run` and `make test` on a fresh machine (Python 3.11, pip).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= fast

.PHONY: install run test test-fast ui bench bench-vendor chaos lint format clean stack stack-stop

# pip, not uv/poetry: `torch==2.13.0` must resolve to the CPU wheel that lies on the machine.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install  ## materialize every asset on the bundled data (PROFILE=fast|full)
	$(BIN)/alphaforge run --profile $(PROFILE)

test: install  ## the whole suite
	$(BIN)/python -m pytest -n 2

test-fast: install  ## unit and asset tests only
	$(BIN)/python -m pytest -m "not integration and not slow"

ui: install  ## Dagster UI on :3000 and MLflow UI on :5000, both on 127.0.0.1
	$(BIN)/alphaforge ui

# the peer's protocol on every fifth ticker, three validation origins (82 min on 2 cores, 64 of them DoubleEnsemble); PROTOCOL= for all 504
PROTOCOL ?= --every 5

bench: install  ## a fresh-home first run timed first (idle machine), then the others
	$(BIN)/python -m benchmarks.first_run
	$(BIN)/python -m benchmarks
	$(BIN)/python -m benchmarks.scaleout
	$(BIN)/python -m benchmarks.scale
	$(BIN)/python -m benchmarks.nights
	$(BIN)/python -m benchmarks.contract
	$(BIN)/python -m benchmarks.vendor
	$(BIN)/python -m benchmarks.qlib_protocol $(PROTOCOL)

bench-vendor: install  ## the shared S&P 500 set, 2015-2020, fast profile end to end, clean and dirty
	$(BIN)/python -m benchmarks.contract
	$(BIN)/python -m benchmarks.vendor

chaos: install  ## SIGKILL the fast run at random moments, rerun, compare (about 20 min)
	$(BIN)/python -m benchmarks.chaos --trials 10

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

STACK_DIR ?= .alphaforge-stack

stack: install  ## the prod topology on this machine: PostgreSQL + MLflow server (deploy/stack.sh)
	MLFLOW=$(BIN)/mlflow deploy/stack.sh start $(STACK_DIR) 5432 5000

stack-stop:
	deploy/stack.sh stop $(STACK_DIR)

clean:
	rm -rf .alphaforge
