# Everything goes through the lockfile (uv.lock): `make run` and `make test` install exactly
# the locked versions into .venv first. Only Python >= 3.11 and make are needed.
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test test-tcp lint format typecheck check migrate bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	@touch $@

install: $(VENV)/.installed

## Serve the API on http://127.0.0.1:8000 (embedded PostgreSQL unless DATABASE_URL is set).
run: install
	$(BIN)/python -m app serve

## The whole test suite with coverage of backend/app (embedded PostgreSQL unless
## TEST_DATABASE_URL is set), on two pytest-xdist workers, each with a database of its own
## (two, not -n auto: a worker keeps about 25 connections open, PostgreSQL allows 100 by default).
## --dist loadscope hands out whole modules, so a module's fixtures (server processes,
## clusters) start once, on one worker; --no-loadscope-reorder keeps the collection order, in
## which the slow modules come first (see backend/tests/conftest.py).
test: install
	$(BIN)/pytest -n 2 --dist loadscope --no-loadscope-reorder --cov --cov-report=term-missing:skip-covered --cov-fail-under=90

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy

check: lint typecheck test

migrate: install
	$(BIN)/python -m app migrate

bench: install
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .coverage
