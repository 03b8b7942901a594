# One entry point per task; each creates .venv and installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test proto lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) -m core.run

test: install
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

# Re-records tests/histories from real runs on a throwaway dev server (see README:
# "Changing workflows safely"): only after an intended, patched workflow change.
.PHONY: record-histories
record-histories: install
	$(PY) -m workflows.record --out tests/histories

# Checkout throughput through the REST API next to a no-op workflow of the same shape
# (the engine's limit), on a fresh dev server; last line JSON. BENCH_ARGS="--orders 200 --concurrency 20".
bench: install
	$(PY) -m benchmarks.bench $(BENCH_ARGS)
