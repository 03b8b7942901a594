# One entry point per task; each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install lock migrate run test proto lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The pinned, hash-checked versions of requirements.lock, then the project itself on top;
# pip check fails when the lock misses a dependency of pyproject.toml (run `make lock`).
$(STAMP): $(PY) pyproject.toml requirements.lock
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# Regenerates requirements.lock from pyproject.toml (with the test extra) from PyPI, for
# every platform; existing pins stay unless LOCK_ARGS=--upgrade.
lock: $(PY)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command "make lock" --output-file requirements.lock --quiet \
		$(LOCK_ARGS)

# Brings DATABASE_URL's schema to the latest migration (every process also does at start).
migrate: install
	$(PY) -m core.migrations

run: install
	$(PY) -m core.run

# Lint first: a tree that does not type-check or is not formatted fails before the suite runs.
test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# Regenerates the gRPC stubs from proto/shop/v1/*.proto (tests fail if they drift).
proto: install
	$(PY) -m core.protogen

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .data .pytest_cache

# Re-records tests/histories from real runs on a throwaway dev server
# (docs/changing-workflows.md): until a release is tagged, after every intended workflow change.
.PHONY: record-histories
record-histories: install
	$(PY) -m workflows.record --out tests/histories

# Checkout throughput and latency through the REST API next to a no-op workflow of the same
# shape (the engine's limit), on a fresh dev server; last line JSON (docs/benchmarks.md).
# BENCH_ARGS="--mode sse,poll,open --orders 200", "--orders 5000 --rounds 1" (scale),
# "--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres" (or BENCH_DATABASE_URL).
bench: install
	$(PY) -m benchmarks.bench $(BENCH_ARGS)
