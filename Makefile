# The commands people and CI both run. `make run` and `make test` work on a fresh
# machine with Python 3.11: they install uv into .tools/ and the locked
# dependencies into .venv/ (a second run reuses both).
PYTHON ?= python3.11
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast lint format bench chaos sim clean compose-env contracts installing-notice

# The first install takes about two minutes and says nothing while it downloads: one
# line says so first (installing-notice runs on every make: silent once installed). Its
# commands and make run's are not echoed: what they print is what a newcomer reads.
$(UV): | installing-notice
	@$(PYTHON) -m venv .tools
	@.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

installing-notice:
	@test -f $(VENV)/.synced || echo "reelflow: first run: installing uv and the locked dependencies into .tools/ and .venv/ (about 2 minutes, this once)"

# Quiet (uv would list every package it installs, ~160 lines the first time; its errors
# still show), then one line: how many packages .venv holds.
$(VENV)/.synced: $(UV) uv.lock pyproject.toml libs/common/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml
	@$(UV) sync --frozen --quiet --python $(PYTHON)
	@echo "reelflow: $$(ls -d $(VENV)/lib/python*/site-packages/*.dist-info | wc -l | tr -d ' ') packages installed in $(VENV), as uv.lock pins them"
	@touch $@

# RUN_ARGS passes the launcher's options, e.g. make run RUN_ARGS="--free-ports"
# (.venv/bin/reelflow-dev --help lists them).
run: $(VENV)/.synced
	@$(BIN)/reelflow-dev $(RUN_ARGS)

sim: $(VENV)/.synced
	$(BIN)/reelflow-runware-sim

# Two workers (pytest-xdist), each taking whole test files in the order they are
# collected, so the longest (tests/e2e) start first; the quick bench and the quick
# chaos run go to one worker, one after the other (tests/conftest.py). A serial run:
# make test TEST_WORKERS=0.
TEST_WORKERS ?= 2
test: $(VENV)/.synced
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

test-fast: $(VENV)/.synced
	$(BIN)/pytest tests/unit

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.synced
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# docs/asyncapi.json and docs/openapi.json, regenerated from the code (a test checks them).
contracts: $(VENV)/.synced
	$(BIN)/python -m reelflow_devtools.contracts

# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--scenario throughput,ceiling".
# See docs/BENCHMARKS.md.
bench: $(VENV)/.synced
	$(BIN)/python -m reelflow_devtools.bench $(BENCH_ARGS)

# Kills services, its own RabbitMQ node and MongoDB under a faulty Runware; not in `make test`.
# CHAOS_ARGS passes options, e.g. make chaos CHAOS_ARGS="--clips 200 --duration 120".
chaos: $(VENV)/.synced
	$(BIN)/python -m reelflow_devtools.chaos $(CHAOS_ARGS)

# The secrets docker-compose.yml requires, random, in .env (never overwritten).
compose-env:
	$(PYTHON) tools/devtools/src/reelflow_devtools/compose_env.py .env

# First the queues and exchanges the stacks of .run left on RabbitMQ, by name (reelflow-dev
# --delete-queues; the default prefix's are any checkout's); while one of them runs, that
# is refused and nothing is removed. A broker that does not answer keeps them (said how
# to delete them later), the rest goes.
clean:
	@if [ -d .run ] && [ -x $(BIN)/reelflow-dev ]; then $(BIN)/reelflow-dev --delete-queues; fi
	@gone="$$(echo $$(ls -d $(VENV) .tools .run 2>/dev/null))"; rm -rf $(VENV) .tools .run; \
	echo "reelflow: removed $${gone:-nothing (there was no $(VENV), .tools or .run)}"
