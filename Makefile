# bcdv: the README's commands. Everything installs into a project-local virtualenv (.venv)
# from requirements.lock, so nothing depends on what happens to be installed on the machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# One pytest worker more than cores: the Airflow, Celery and browser tests spend most of their
# time waiting on polls and whole-second ticks (12.5 min for the suite with 3 workers on 2
# cores on 2026-12-07; 2 workers took 17 to 25 min in earlier runs on this kind of machine).
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: venv browser node demo lint test soak bench contract up clean help

help:
	@echo "make demo   - start the emulators, sync customers through Airflow twice, print summaries"
	@echo "make test   - lint, then run the whole test suite (without the long soaks)"
	@echo "make lint   - ruff over the product, DAGs, emulators and tests; mypy on the core packages"
	@echo "make soak   - the long fault, crash and property drills (tests/drills, marker soak)"
	@echo "make bench  - the benchmarks (README: Performance); BENCH_ARGS=--quick for a short run"
	@echo "make contract - the contract suite against a real tenant (BCDV_CONTRACT_ENDPOINTS=endpoints.json)"
	@echo "make up     - emulators + Airflow with the bcdv pages on http://localhost:8080"
	@echo "make clean  - remove the virtualenv and local state"

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml emulators/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e . -e emulators/
	touch $(STAMP)

demo: venv
	$(BIN)/python -m bcdv.demo

# Debian's Chromium + ChromeDriver for tests/browser (installed once; needs root, else
# those tests skip and say why).
browser:
	@bash .ci/install-browser.sh || echo "browser tests will be skipped: chromium is not installed"

# The pinned npm packages of tests/contract/node (the dynamics-web-api client of the contract
# suite): npm ci, only when node_modules is missing or older than the lock file. Without npm
# the test that needs them skips and says why.
NODE_DIR := tests/contract/node
NODE_STAMP := $(NODE_DIR)/node_modules/.package-lock.json

node: $(NODE_STAMP)

$(NODE_STAMP): $(NODE_DIR)/package-lock.json $(NODE_DIR)/package.json
	@if command -v npm >/dev/null; then \
		cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.package-lock.json; \
	else echo "npm not found: the dynamics-web-api contract test will be skipped"; fi

# ruff (rules in pyproject.toml [tool.ruff]: among them, the core never imports airflow) over
# everything in the repository, and mypy on the core packages ([tool.mypy] files). No code
# formatter is enforced, so there is no `ruff format --check`.
lint: venv
	$(BIN)/ruff check
	$(BIN)/mypy

test: venv browser node lint
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q -m "not soak" --durations=25

# The long drills: more runs, more data, more Hypothesis examples (BCDV_DRILL_SEED=n varies
# every random draw; the figures are printed with -s).
soak: venv
	$(BIN)/python -m pytest -m soak tests/drills -q

# The benchmarks of README "Performance": table and chart in bench/results/, the table also
# in README.md. Sizes: BENCH_N (scenarios, default 10000), BENCH_SIZES (memory curve,
# default 10000,100000), BENCH_ONLY (groups), BENCH_ENGINE (a git ref to measure instead of
# the working tree); BENCH_ARGS=--quick for a one-minute run. See python -m bcdv.bench -h.
bench: venv
	$(BIN)/python -m bcdv.bench --readme $(if $(BENCH_N),--size $(BENCH_N)) \
		$(if $(BENCH_SIZES),--sizes $(BENCH_SIZES)) $(if $(BENCH_ONLY),--only $(BENCH_ONLY)) \
		$(if $(BENCH_ENGINE),--engine $(BENCH_ENGINE)) $(BENCH_ARGS)

# The conformance tests of tests/contract against a real tenant (a sandbox): they create
# records named bcdv-contract-* and delete them again. `make test` runs them on the emulators.
contract: venv node
	@test -n "$(BCDV_CONTRACT_ENDPOINTS)" || { echo "make contract: set BCDV_CONTRACT_ENDPOINTS=path/to/endpoints.json (see README, 'Checking the emulators against your tenant'); make test runs the suite against the emulators"; exit 2; }
	BCDV_CONTRACT_ENDPOINTS="$(abspath $(BCDV_CONTRACT_ENDPOINTS))" $(BIN)/python -m pytest tests/contract -q -p no:xdist

# The emulators + airflow standalone with the connections set: DAGs and the bcdv pages on
# http://localhost:8080 (PORT=... to change); prints the login. Ctrl-C stops everything.
up: venv
	$(BIN)/python -m bcdv.cli up --port $(or $(PORT),8080)

clean:
	rm -rf $(VENV) .airflow .data .artifacts
