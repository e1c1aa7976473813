# c360: `make run` and `make test` are the only set-up a fresh machine with Python 3.11+ needs.

# The first Python that is 3.11 or newer.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	2>/dev/null && echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs the service and the embedded stores; `make test` adds the test tools.
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev
GRAPHIQL := api/graphiql/dist/graphiql.js
DEMO_CUSTOMERS ?= 2000
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev graphiql run test lint schema bench clean

$(INSTALLED): pyproject.toml
	@test -n "$(PYTHON)" || { echo "c360 needs Python 3.11 or newer on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The `embedded` extra brings SecantusDB, the MongoDB stand-in.
	$(BIN)/python -m pip install --quiet -e ".[embedded]"
	touch $@

$(DEV_INSTALLED): $(INSTALLED)
	# `dev`: the test, lint and bench tools.
	$(BIN)/python -m pip install --quiet -e ".[embedded,dev]"
	touch $@

# GraphiQL's assets, bundled from the exactly pinned npm packages in api/graphiql. Without
# Node.js 20+ and npm the service runs all the same, and its GraphiQL page says how to build.
$(GRAPHIQL): api/graphiql/package-lock.json api/graphiql/build.mjs api/graphiql/src/main.js
	@if command -v npm >/dev/null 2>&1 && node -e \
		'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' 2>/dev/null; then \
		$(MAKE) --no-print-directory graphiql \
		|| echo "c360: GraphiQL not built (npm failed; offline?): run make graphiql later" >&2; \
	else echo "c360: GraphiQL not built (it needs Node.js 20+ and npm): run make graphiql later" >&2; fi

graphiql:
	cd api/graphiql && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

install: $(INSTALLED) $(GRAPHIQL)

install-dev: install $(DEV_INSTALLED)

run: install
	$(BIN)/c360 migrate
	$(BIN)/c360 seed --if-empty --customers $(DEMO_CUSTOMERS)
	$(BIN)/c360 serve --host $(HOST) --port $(PORT)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

# wrk drives the load; apt-get installs it where it can (as root on Debian/Ubuntu).
bench: install-dev
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -q wrk >/dev/null 2>&1 || (apt-get update -q >/dev/null \
		&& apt-get install -y -q wrk >/dev/null)); } || { echo "make bench needs wrk: \
	install it (apt-get install wrk, brew install wrk) and run again" >&2; exit 1; }
	$(BIN)/python -m bench $(BENCH_ARGS)

schema: install
	$(BIN)/c360 export-schema --output schema.graphql
	$(BIN)/c360 export-schema --federation --output schema.subgraph.graphql

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache api/graphiql/dist api/graphiql/node_modules
