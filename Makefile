# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= deploy/aiwall.yaml

.PHONY: install run test lint e2e clean

$(BIN)/aiwall: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/aiwall

run: install
	$(BIN)/aiwall serve --config $(CONFIG)

test: install
	tests/tools/install-system-deps.sh
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check resolver tests
	$(BIN)/ruff format --check resolver tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
