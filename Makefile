# handoff — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
CODE   := src tests $(wildcard bench)

.PHONY: demo test lint typecheck check bench-ingest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## demo: set up and run the demo on the embedded SQLite default
demo: $(STAMP)
	$(BIN)/handoff demo

## test: set up and run the whole test suite (SQLite and PostgreSQL)
test: $(STAMP)
	$(BIN)/python -m pytest -n auto

## lint: ruff and mypy
lint: $(STAMP)
	$(BIN)/ruff check $(CODE)
	$(BIN)/ruff format --check $(CODE)
	$(BIN)/mypy

check: lint test

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .demo
