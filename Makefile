# c360: `make run` and `make test` are the only set-up a fresh machine with Python 3.11+ needs.

# The first Python that is 3.11 or newer.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DEMO_CUSTOMERS ?= 2000
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint schema bench clean

$(INSTALLED): pyproject.toml
	@test -n "$(PYTHON)" || { echo "c360 needs Python 3.11 or newer on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The `embedded` extra brings SecantusDB, the MongoDB stand-in; `dev` the test tools.
	$(BIN)/python -m pip install --quiet -e ".[embedded,dev]"
	touch $@

install: $(INSTALLED)

run: install
	$(BIN)/c360 migrate
	$(BIN)/c360 seed --if-empty --customers $(DEMO_CUSTOMERS)
	$(BIN)/c360 serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# wrk drives the load; apt-get installs it where it can (as root on Debian/Ubuntu).
bench: install
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null \
		&& apt-get install -y -q wrk >/dev/null)); } || { echo "make bench needs wrk: \
	install it (apt-get install wrk, brew install wrk) and run again" >&2; exit 1; }
	$(BIN)/python -m bench $(BENCH_ARGS)

schema: install
	$(BIN)/c360 export-schema --output schema.graphql
	$(BIN)/c360 export-schema --federation --output schema.subgraph.graphql

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
